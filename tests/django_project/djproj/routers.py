"""Every model on the database DYRYGENT_DJANGO_DB names (a test runs one database at a
time; Django reads the router on each query)."""

from __future__ import annotations

import os
from typing import Any


def selected() -> str:
    return os.environ.get("DYRYGENT_DJANGO_DB", "default")


class SelectedDatabase:
    def db_for_read(self, model: Any, **hints: Any) -> str:
        return selected()

    def db_for_write(self, model: Any, **hints: Any) -> str:
        return selected()

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool:
        return True
