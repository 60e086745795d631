"""Helpers shared by the lessons of the course (plots, metrics, recording results).

Lessons import what they need, e.g. ``from mlhep import plotting, record_figures``.
Each helper says in its docstring which lesson introduces it. The physics and the
machine learning stay in the notebooks; only plumbing lives here.
"""

from .figures import read_figures, record_figures

__all__ = ["read_figures", "record_figures"]
