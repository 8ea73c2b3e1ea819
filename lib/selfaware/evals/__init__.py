"""Evaluations: self-report tasks, behaviour measurement, scorers."""
