"""The pytest side of the lab: options, the header, fixtures over the stack, the progress record.

The root conftest.py loads ``labs.harness.plugin.fixtures`` and ``labs.harness.plugin.progress``."""
