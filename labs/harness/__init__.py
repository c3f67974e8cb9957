"""What the lessons lean on: real services, started and stopped for sure. Learners never edit this."""
