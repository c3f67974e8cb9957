# celery-handson: every target installs what it needs into .venv first.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Flower (the optional group `flower`), installed by the targets that start or test it.
FLOWER_STAMP := $(VENV)/.installed-flower
PYTEST := $(PY) -m pytest
# The project's tests side by side: most of their time is spent waiting on the labs' sleeps
# and on child runs, so three at a time fit two cores. `--dist loadgroup --no-loadscope-reorder`
# with no groups hands the tests out one by one in tests/conftest.py's order (longest first).
# (xdist_group marks do nothing with pytest 9.2 and xdist 3.8: a module's module-scoped fixture
# starts once in each xdist worker that runs one of its tests.)
TEST_JOBS ?= 3
# SOLUTION=1 runs against the reference solution instead of your handson/.
LAB_OPTS := $(if $(filter 1 yes true,$(SOLUTION)),--solution,)
# FLOWER=1 make run: Flower too.
WANT_FLOWER := $(filter 1 yes true,$(FLOWER))

.PHONY: help install doctor test test-unprivileged lint run flower step1 step2 step3 step4 step5 step6 step7 step8 step9 step10 step11 step12 step13 lab bench clean status hint watch reset grade

help:
	@echo "make run        the hands-on app at http://127.0.0.1:$${PORT:-8000}/handson (Ctrl-C stops it)"
	@echo "                FLOWER=1: Flower too, at http://127.0.0.1:$${FLOWER_PORT:-5555}"
	@echo "make flower     Flower (the Celery monitor) beside a running make run"
	@echo "make step1..13  check one step of your handson/ (SOLUTION=1: the reference)"
	@echo "make lab        every step, in parallel"
	@echo "make test       the project's own tests (labs on the reference + lab integrity)"
	@echo "make bench      how long the lab takes, and its overhead beyond the sleeps (AT_SCALE=1: 10,000 and 100,000 tasks)"
	@echo "make lint       ruff over the harness, the labs and the tests"
	@echo "make doctor     what this machine has for the lab (Python, Redis, Docker, ports), and what to run for the rest"
	@echo "make status     your progress: each step passed / failed / not run, and what is next"
	@echo "make hint STEP=n   the next hint of step n (ALL=1: every hint)"
	@echo "make watch STEP=n  check step n again on every save under handson/ (WATCH_POLL=1 on network drives)"
	@echo "make reset [STEP=n]  put handson/ back to the starter (STEP=n: step n's files back to how step n begins), with a backup (YES=1: no question)"
	@echo "make grade      score every lab test: result.json (Classroom 50), junit.xml, grade.md into GRADE_DIR (default .)"
	@echo "                WORKSPACE=DIR: grade DIR/handson/ with this checkout's labs; SOLUTION=1: the reference; TIMEOUT=s per step"
	@echo "                STEPS=1-4: only those steps (the scores and the maximum are theirs)"

$(STAMP): pyproject.toml
	@$(PYTHON) -m venv $(VENV) || { echo "Could not create $(VENV): install Python 3.11+ with venv (Debian: apt install python3-venv)"; exit 1; }
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	$(PY) -m labs.harness.tools.get_redis
	@touch $(STAMP)

$(FLOWER_STAMP): $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,flower]'
	@touch $(FLOWER_STAMP)

install: $(STAMP)

# Before `make install` too: the system's Python until the venv exists.
doctor:
	@$(if $(wildcard $(PY)),$(PY),$(PYTHON)) -m labs.harness.tools.doctor

run: $(STAMP) $(if $(WANT_FLOWER),$(FLOWER_STAMP))
	$(PY) -m labs.harness.tools.run $(LAB_OPTS) $(if $(WANT_FLOWER),--flower)

flower: $(FLOWER_STAMP)
	$(PY) -m labs.harness.tools.flower

step1 step2 step3 step4 step5 step6 step7 step8 step9 step10 step11 step12 step13: $(STAMP)
	$(PYTEST) labs/test_$@.py $(LAB_OPTS)

# In parallel: every pytest-xdist worker starts its own stack; one module stays on one worker.
lab: $(STAMP)
	$(PYTEST) labs $(LAB_OPTS) -n auto --dist loadfile

# The tests start Flower too (tests/test_monitoring.py), so they install it.
test: $(FLOWER_STAMP)
	$(PYTEST) tests -n $(TEST_JOBS) --dist loadgroup --no-loadscope-reorder

# CI, as root: the tests of grading's guards again as a user with no rights here (labs/harness/dev/unprivileged.py).
test-unprivileged: $(STAMP)
	$(PY) -m labs.harness.dev.unprivileged -- $(PY) -m pytest tests/test_grading_hostile.py tests/test_grading_submissions.py \
		tests/test_confine.py tests/test_intake.py \
		-p no:cacheprovider -q -rs

lint: $(STAMP)
	$(PY) -m ruff check labs tests conftest.py manage.py classroom50

# AT_SCALE=1: the page, the API and StopAllTasks with 10,000 and 100,000 tasks instead.
bench: $(STAMP)
	$(PY) -m labs.harness.dev.bench $(if $(filter 1 yes true,$(AT_SCALE)),--at-scale,)

clean:
	rm -rf $(VENV) .lab result.json junit.xml grade.md

# Learner tools (labs/harness): STEP=n picks a step; without it, the next one to do.
status: $(STAMP)
	$(PY) -m labs.harness.tools.status

hint: $(STAMP)
	$(PY) -m labs.harness.tools.hints $(STEP) $(if $(filter 1 yes true,$(ALL)),--all,)

watch: $(STAMP)
	$(PY) -m labs.harness.tools.watch $(STEP) $(LAB_OPTS)

reset: $(STAMP)
	$(PY) -m labs.harness.tools.reset $(STEP) $(if $(filter 1 yes true,$(YES)),--yes,)

# Exit code 1 when a test fails (2: could not grade), so a CI job that reads only the exit
# code never passes a failing lab. WORKSPACE=DIR grades DIR/handson/ alone, with these labs.
GRADE_DIR ?= .
GRADE_OPTS = $(strip $(LAB_OPTS) $(if $(WORKSPACE),--workspace=$(WORKSPACE)) $(if $(STEPS),--steps=$(STEPS)) --out=$(GRADE_DIR) \
                     $(if $(TIMEOUT),--timeout=$(TIMEOUT)))
grade: $(STAMP)
	$(PY) -m labs.harness.tools.grade $(GRADE_OPTS)
