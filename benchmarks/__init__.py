"""Benchmarks of dyrygent against native Celery and celery-dyrygent 0.8.0.

``python -m benchmarks.run [--quick]``: workflow shapes on a private redis-server and a real
``celery worker -P prefork -c 2``; ``python -m benchmarks.micro``: the pure core alone.
See benchmarks/RESULTS.md.
"""
