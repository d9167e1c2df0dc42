"""The dashboard's Plotly figures: the builders live in :mod:`conceptlens.figures` (torch-free,
shared with the notebook helpers of :mod:`conceptlens.plots`); this module re-exports them so
``from backend import figures`` and ``backend.figures.X`` keep working."""

from conceptlens.figures import *  # noqa: F403
from conceptlens.figures import __all__ as __all__
