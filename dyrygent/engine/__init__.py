"""The Celery adapter: canvas conversion, result reads, the store and the processor task."""
