"""A Django app with Celery tasks."""
