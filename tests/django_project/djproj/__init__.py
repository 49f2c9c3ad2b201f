"""A Django project on django-celery-results, as a company would have it (issue 15)."""
