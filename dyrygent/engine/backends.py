"""Telling result backend types apart without importing optional packages."""

from __future__ import annotations

import sys

__all__ = ["loaded_class"]


def loaded_class(module: str, name: str) -> type | None:
    """``module.name`` if ``module`` is already imported, else None.

    A backend of a class can exist only once its module was imported, so ``isinstance``
    against this result dispatches on the backend's real type without importing optional
    packages (django-celery-results, SQLAlchemy) that the app does not use.
    """
    found = sys.modules.get(module)
    return getattr(found, name, None) if found is not None else None
