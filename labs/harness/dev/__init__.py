"""Maintainers' commands: the benchmark and the reference chain's export/record."""
