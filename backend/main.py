"""ASGI entry point for production: ``uvicorn backend.main:app`` (workers run separately).

At start-up it asks a worker to create the built-in demo resources if they are missing
(idempotent); the migrate job has run before the API starts.
"""

from __future__ import annotations

from backend.app import create_app
from backend.queue import TASK_ENSURE_BUILTINS, enqueue

app = create_app(on_startup=[lambda: enqueue(TASK_ENSURE_BUILTINS)])
