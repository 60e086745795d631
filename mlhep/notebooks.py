"""Finding and running the course's notebooks (used by the course build and the tests)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KERNEL = "mlhep"


def course_notebooks(root: Path = REPO) -> list[Path]:
    """Every lecture and solution notebook, in lesson order (found by glob, never listed by hand)."""
    found = list((root / "course").glob("*.ipynb")) + list((root / "solutions").glob("*/*.ipynb"))
    return sorted(
        (p for p in found if ".ipynb_checkpoints" not in p.parts),
        key=lambda p: (p.name, p.parent.name != "course"),
    )


def run_notebook(
    path: Path, output: Path, parameters: dict | None = None, kernel: str = KERNEL, timeout: int | None = None
):
    """Execute ``path`` with papermill, injecting ``parameters``; returns the executed notebook.

    Kept behind one function so the engine can be swapped (e.g. for nbclient) in one place.
    """
    import papermill

    output.parent.mkdir(parents=True, exist_ok=True)
    return papermill.execute_notebook(
        str(path),
        str(output),
        parameters=parameters or {},
        kernel_name=kernel,
        cwd=str(path.parent),
        progress_bar=False,
        execution_timeout=timeout,
    )
