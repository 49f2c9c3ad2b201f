"""The pure core of dyrygent: graph, tick planning and codec. Imports no Celery."""
