"""Recording a notebook's key figures so that tests and the course build can read them back.

Introduced in lesson 00. A notebook ends with, for example::

    record_figures(auc=0.91, tpr_at_fpr_1e3=0.12)

which shows a small table and stores the numbers in the notebook's output under a
dedicated MIME type. :func:`read_figures` finds them again in an executed notebook.
"""

from __future__ import annotations

import math
import numbers
from pathlib import Path

MIME_TYPE = "application/vnd.mlhep.figures+json"


def _plain(value):
    """Convert numpy scalars to Python numbers; refuse anything that is not a number or string."""
    if isinstance(value, bool):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return value
    raise TypeError(f"record_figures accepts numbers and strings, got {type(value).__name__}")


def record_figures(**figures) -> None:
    """Display ``figures`` as a table and store them in the notebook output."""
    from IPython.display import display

    plain = {name: _plain(value) for name, value in figures.items()}
    width = max(map(len, plain), default=0)
    lines = [
        f"{name:<{width}}  {value:.4g}" if isinstance(value, float) else f"{name:<{width}}  {value}"
        for name, value in plain.items()
    ]
    display({MIME_TYPE: plain, "text/plain": "\n".join(["Recorded figures:"] + lines)}, raw=True)


def read_figures(notebook) -> dict:
    """All figures recorded in an executed notebook (a path or a NotebookNode), merged in order."""
    # Imported here, not at the top: nbformat's schema validation takes seconds to import, and
    # every lesson imports this module for record_figures, which does not need it.
    import nbformat

    if not isinstance(notebook, nbformat.NotebookNode):
        notebook = nbformat.read(Path(notebook), as_version=4)
    figures: dict = {}
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if MIME_TYPE in data:
                figures.update(data[MIME_TYPE])
    return figures
