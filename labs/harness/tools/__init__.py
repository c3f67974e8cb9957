"""The learner's and the teacher's commands: run, status, hint, watch, reset, grade (make targets)."""
