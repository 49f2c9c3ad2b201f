"""celery-dyrygent compatibility: what ``dyrygent.workflows`` and ``dyrygent.tasks`` need.

Modules: :mod:`.extras` (what a compat workflow keeps beside dyrygent's header: custom
payloads, backup tick bounds), :mod:`.starting` (starting a workflow whose nodes do not all
start WAITING: skipped or adopted), :mod:`.convert` (a celery-dyrygent 0.8.0 ``workflow_dict``
as a dyrygent graph), :mod:`.adopt` (the task that takes over celery-dyrygent's processor
messages), :mod:`.hooks` (celery-dyrygent's ``Workflow.connect`` hooks) and
:mod:`.processor` (the processor that honours per-workflow backup tick bounds).
"""

from __future__ import annotations
