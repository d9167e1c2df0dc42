"""ASGI entry point for production: ``uvicorn backend.main:app`` (workers run separately)."""

from __future__ import annotations

from backend.app import create_app

app = create_app()
