"""Celery canvases in, graph nodes out: the ONLY package that reads canvas internals.

``convert`` walks a canvas into a GraphBuilder; ``errbacks`` records, at build time, the
errbacks Celery calls when a chord's header fails, and rebuilds the body Celery would fail.
"""

from __future__ import annotations

from dyrygent.engine.canvas.convert import STRUCTURAL_OPTIONS, CanvasConverter
from dyrygent.engine.canvas.errbacks import chord_body_for_errors

__all__ = ["CanvasConverter", "STRUCTURAL_OPTIONS", "chord_body_for_errors"]
