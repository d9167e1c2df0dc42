"""Errors whose message is written for a person, with the HTTP status they map to."""

from __future__ import annotations


class ClientError(ValueError):
    """A request the service refuses; the app turns it into ``{"detail": message}``."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
