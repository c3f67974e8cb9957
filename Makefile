# celery-handson: every target installs what it needs into .venv first.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTEST := $(PY) -m pytest
# SOLUTION=1 runs against the reference solution instead of your handson/.
LAB_OPTS := $(if $(filter 1 yes true,$(SOLUTION)),--solution,)

.PHONY: help install test run step1 step2 step3 step4 lab bench clean

help:
	@echo "make run        the hands-on app at http://127.0.0.1:$${PORT:-8000}/handson (Ctrl-C stops it)"
	@echo "make step1..4   check one step of your handson/ (SOLUTION=1: the reference)"
	@echo "make lab        all four steps"
	@echo "make test       the project's own tests (labs on the reference + lab integrity)"
	@echo "make bench      how long the lab takes, and its overhead beyond the sleeps"

$(STAMP): pyproject.toml
	@$(PYTHON) -m venv $(VENV) || { echo "Could not create $(VENV): install Python 3.10+ with venv (Debian: apt install python3-venv)"; exit 1; }
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(PY) -m labs.harness.run $(LAB_OPTS)

step1 step2 step3 step4: $(STAMP)
	$(PYTEST) labs/test_$@.py $(LAB_OPTS)

lab: $(STAMP)
	$(PYTEST) labs $(LAB_OPTS)

test: $(STAMP)
	$(PYTEST) tests

bench: $(STAMP)
	$(PY) -m labs.harness.benchmark

clean:
	rm -rf $(VENV) .lab grade.json grade.md
