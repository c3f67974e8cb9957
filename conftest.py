# The lab's fixtures and options live in the harness, apart from the learner's code.
pytest_plugins = ["labs.harness.plugin", "labs.harness.progress"]
