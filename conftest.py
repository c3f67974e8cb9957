# The lab's fixtures and options live in the harness, apart from the learner's code.
pytest_plugins = [
    "labs.harness.plugin.options",
    "labs.harness.plugin.header",
    "labs.harness.plugin.fixtures",
    "labs.harness.plugin.progress",
    "labs.harness.plugin.instant",
]
