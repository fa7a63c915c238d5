"""Celery tasks, with explicit names."""
