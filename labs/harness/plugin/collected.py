"""Which tests a run collected, written before any runs (loaded by runner.run_labs).

Grading gives points per test, so it must know every test of a step, including
those a timeout or a crash kept from running (JUnit lists only what ran). The
list goes to the JSON file named by HANDSON_COLLECTED: [[module, test], ...].
"""
import json
import os


def pytest_collection_finish(session):
    target = os.environ.get("HANDSON_COLLECTED")
    if target and not hasattr(session.config, "workerinput"):  # the xdist controller writes it, once
        tests = [[item.nodeid.split("::", 1)[0], item.name] for item in session.items]
        with open(target, "w", encoding="utf-8") as handle:
            json.dump(tests, handle)
