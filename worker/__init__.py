"""Celery workers that run training and fine-tuning jobs."""
