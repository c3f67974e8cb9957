"""A pytest plugin for the verdict checks: run each module's tests in reverse order."""


def pytest_collection_modifyitems(items):
    by_module = {}
    for item in items:
        by_module.setdefault(item.nodeid.split("::")[0], []).append(item)
    items[:] = [item for module in by_module.values() for item in reversed(module)]
