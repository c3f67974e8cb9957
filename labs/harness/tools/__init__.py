"""The learner's and the teacher's commands: run, status, hint, watch, reset, grade (make targets).

grade writes its reports through classroom50 (result.json), reports (junit.xml, grade.md)
and outside (files changed outside handson/)."""
