"""What runs, and nothing about lessons: processes, Redis, the worker, the web server, the stack.

Services report what they saw (``causes.Cause``); the lesson layer says it to the learner."""
