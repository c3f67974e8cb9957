"""The pytest side of the lab: options, the header, fixtures over the stack, the progress record.

The root conftest.py loads ``labs.harness.plugin.fixtures`` and ``labs.harness.plugin.progress``;
runner.run_labs adds ``labs.harness.plugin.collected`` (which tests a run collected, for grading)."""
