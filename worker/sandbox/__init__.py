"""The model sandbox: uploaded models run only in child processes with limits.

:mod:`.parent` (the worker's side: :func:`~.parent.current`, :class:`~.parent.Sandbox`),
:mod:`.child` (the process), :mod:`.ops` (what it can be asked), :mod:`.wire` (messages).
This package imports nothing at import time, so the child does not load the service.
"""
