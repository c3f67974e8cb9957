"""What the lessons import: the checks the labs share, waiting with a deadline, and the advice
(every learner-facing sentence about a service, English and Japanese, once)."""
