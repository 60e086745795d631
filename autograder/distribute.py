"""What students receive: the course without its solutions, hidden tests and grader.

    python -m autograder distribute DEST [--archive]

The repository is public and holds ``solutions/`` (nbgrader's source: reference solutions and
hidden tests) and the grader, so a graded class is given a distribution built from it instead:

* as they are, the repository's tracked files of ``course/`` (lectures), ``exercises/`` (released by
  nbgrader, without solutions or hidden tests), ``mlhep/`` and ``data_fetch/`` (what the notebooks
  import; without the course build and its website, which only instructors run), ``requirements.lock``,
  ``environment.yml`` and ``LICENSE``;
* ``pyproject.toml`` installing ``mlhep`` and ``data_fetch`` only, without the sections about the
  repository's own tests;
* from ``autograder/for_students/``: the students' ``run.sh`` (set-up, data, JupyterLab; its set-up
  hides nbgrader's instructor tools from the environment's JupyterLab), a README with the lesson
  table, and the ``nbgrader_config.py`` that Validate reads.

Files come from ``git ls-files`` in a git checkout, so that untracked files, caches and ``.venv/``
never get in; elsewhere the same folders are walked, without caches and hidden files. Before the
distribution is handed over it is checked (:func:`check_distribution`), and a finding stops the
build: the folder or archive is only written once the check passed.
"""

from __future__ import annotations

import ast
import gzip
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import tomllib
from pathlib import Path

from .course import REPO_ROOT, AutograderError, UsageError

#: Top-level entries of the repository that students receive as they are.
SHIPPED = ("course", "exercises", "mlhep", "data_fetch", "requirements.lock", "environment.yml", "LICENSE")
#: Modules of the shipped packages that only instructors run: the course build (it releases the
#: exercises with the grader and runs the solutions), the notebook runner it uses, and the website.
INSTRUCTOR_MODULES = ("mlhep/build.py", "mlhep/notebooks.py", "mlhep/site.py")
#: The packages the students' pyproject.toml installs.
STUDENT_PACKAGES = ("data_fetch", "mlhep")
#: pyproject.toml sections about the repository's test suite and type checks, whose files stay behind.
DROPPED_PYPROJECT_SECTIONS = ("tool.pytest.ini_options", "tool.mypy")
#: The students' run.sh, README.md (a template) and nbgrader_config.py.
STUDENT_FILES = Path(__file__).resolve().parent / "for_students"
#: What a distribution must never hold, at its top level.
WITHHELD = ("solutions", "autograder", "tests", "docs", ".ci", ".git", "CONTRIBUTING.md", "CHANGELOG.md")
#: Modules that must not be imported from a distribution (students do not receive them).
WITHHELD_MODULES = ("autograder", *(path.removesuffix(".py").replace("/", ".") for path in INSTRUCTOR_MODULES))
#: nbgrader's delimiters of the solution and hidden-test regions.
MARKERS = ("BEGIN SOLUTION", "BEGIN HIDDEN TESTS")
#: Shorter lines of a solution are too common to be evidence (``return x``, ``model.fit(``).
MIN_SECRET_LINE = 20
#: Python's caches and Jupyter's checkpoints, which the walk outside a git checkout leaves out.
SKIPPED_NAMES = ("__pycache__", ".ipynb_checkpoints")
#: Modification time of every archive entry (2000-01-01 UTC): the same course gives the same bytes.
ARCHIVE_MTIME = 946_684_800


def build_student_distribution(dest: str | Path, archive: bool = False) -> Path:
    """Build what students receive in the folder ``dest``, or with ``archive`` as the ``.tar.gz``
    ``dest`` (``.tar.gz`` is added to a name without it; its one top-level folder is named after it).

    Returns:
        The folder or archive written.

    Raises:
        UsageError: ``dest`` is inside the repository, or exists and is not an empty folder.
        AutograderError: the check found solutions, hidden tests or the grader in the distribution
            (nothing is written then).
    """
    dest = Path(dest).expanduser().absolute()
    if archive and not dest.name.endswith(".tar.gz"):
        dest = dest.with_name(f"{dest.name}.tar.gz")
    check_destination(dest, archive)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        # Built beside the destination, so that moving it there is a rename.
        with tempfile.TemporaryDirectory(prefix=f".{dest.name}.", dir=dest.parent) as work:
            folder = Path(work) / (dest.name.removesuffix(".tar.gz") if archive else dest.name)
            write_distribution(folder)
            check_distribution(folder)
            if archive:
                partial = Path(work) / dest.name
                write_archive(folder, partial)
                os.replace(partial, dest)
            else:
                if dest.exists():
                    dest.rmdir()  # empty: check_destination made sure
                folder.rename(dest)
    except OSError as error:
        raise AutograderError(f"could not write the student distribution to {dest}: {error}") from None
    return dest


def check_destination(dest: Path, archive: bool = False) -> None:
    """Raise UsageError for a destination inside the repository or one that holds something already."""
    resolved, repo = dest.resolve(), REPO_ROOT.resolve()
    if resolved.is_relative_to(repo):
        raise UsageError(
            f"{dest} is inside the course repository {repo}, whose solutions must not travel with it: "
            f"give a destination outside it, e.g. {repo.parent / 'mlhep-students'}"
        )
    if not resolved.exists():
        return
    if archive or not resolved.is_dir():
        raise UsageError(f"{dest} exists already: remove it, or give a name that does not exist yet")
    if any(resolved.iterdir()):
        raise UsageError(
            f"{dest} is not empty: give a new or empty folder (a distribution is never mixed with older files)"
        )


def write_distribution(folder: Path, root: Path = REPO_ROOT) -> None:
    """Write the students' files of the course at ``root`` into the new folder ``folder``."""
    folder.mkdir(parents=True)
    for relative in course_files(root):
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / relative, target)
    pyproject = (root / "pyproject.toml").read_text()
    (folder / "pyproject.toml").write_text(student_pyproject(pyproject))
    version = tomllib.loads(pyproject)["project"]["version"]
    readme = (STUDENT_FILES / "README.md").read_text()
    (folder / "README.md").write_text(
        readme.replace("{version}", version).replace("{lessons}", lesson_table(folder))
    )
    shutil.copyfile(STUDENT_FILES / "nbgrader_config.py", folder / "nbgrader_config.py")
    shutil.copyfile(STUDENT_FILES / "run.sh", folder / "run.sh")
    (folder / "run.sh").chmod(0o755)


def course_files(root: Path = REPO_ROOT) -> list[str]:
    """The repository-relative paths (``/``-separated) of the files students receive as they are."""
    tracked = git_tracked_files(root)
    candidates = walked_files(root) if tracked is None else [p for p in tracked if (root / p).is_file()]
    return sorted(p for p in candidates if p.split("/")[0] in SHIPPED and p not in INSTRUCTOR_MODULES)


def git_tracked_files(root: Path) -> list[str] | None:
    """The files git tracks under ``root`` (None outside a git checkout, or without git)."""
    if not (root / ".git").exists():
        return None
    try:
        listed = subprocess.run(["git", "-C", str(root), "ls-files", "-z"], capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return [path for path in listed.stdout.decode().split("\0") if path]


def walked_files(root: Path) -> list[str]:
    """The files of the shipped entries of ``root``, without caches, checkpoints and hidden files."""
    found = []
    for entry in SHIPPED:
        if (root / entry).is_file():
            found.append(entry)
            continue
        for folder, subfolders, names in os.walk(root / entry):
            subfolders[:] = [d for d in subfolders if d not in SKIPPED_NAMES and not d.startswith(".")]
            found += [
                (Path(folder) / name).relative_to(root).as_posix()
                for name in names
                if not name.startswith(".") and not name.endswith((".pyc", ".pyo"))
            ]
    return found


def student_pyproject(text: str) -> str:
    """The repository's pyproject.toml for students: its packages only, without the test suite's sections."""
    kept, section = [], None
    for line in text.splitlines(keepends=True):
        header = re.match(r"\[([^\[\]]+)\]\s*$", line)
        if header:
            section = header.group(1).strip()
        if section not in DROPPED_PYPROJECT_SECTIONS:
            kept.append(line)
    packages = ", ".join(f'"{name}"' for name in STUDENT_PACKAGES)
    text, replaced = re.subn(r"(?m)^packages\s*=\s*\[[^\]]*\]", f"packages = [{packages}]", "".join(kept))
    parsed = tomllib.loads(text)
    if replaced != 1 or parsed.get("tool", {}).get("setuptools", {}).get("packages") != list(STUDENT_PACKAGES):
        raise AutograderError(
            "pyproject.toml's [tool.setuptools] list `packages = [...]` was not found: keep it in that form, "
            "or teach autograder/distribute.py the new one"
        )
    return text.rstrip("\n") + "\n"


def lesson_table(folder: Path) -> str:
    """Markdown rows (lesson, lecture, exercise) of the lectures in ``folder/course``."""
    import nbformat

    from mlhep.site import lesson_title

    rows = []
    for lecture in sorted((folder / "course").glob("*.ipynb")):
        exercise = folder / "exercises" / lecture.stem
        exercise_cell = f"`exercises/{lecture.stem}/`" if exercise.is_dir() else ""
        title = lesson_title(nbformat.read(lecture, as_version=4)) or lecture.stem
        rows.append(f"| {title} | `course/{lecture.name}` | {exercise_cell} |")
    return "\n".join(rows)


def write_archive(folder: Path, archive: Path) -> None:
    """``folder`` as a reproducible ``.tar.gz``: sorted entries, one owner and time, no gzip name or time."""
    entries = sorted(folder.rglob("*"), key=lambda p: p.relative_to(folder).as_posix())
    with (
        open(archive, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as compressed,
        tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for path in [folder, *entries]:
            info = tarfile.TarInfo(Path(folder.name, path.relative_to(folder)).as_posix())
            info.mtime, info.uid, info.gid, info.uname, info.gname = ARCHIVE_MTIME, 0, 0, "", ""
            if path.is_dir():
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = path.stat().st_size, 0o755 if os.access(path, os.X_OK) else 0o644
                with open(path, "rb") as handle:
                    tar.addfile(info, handle)


# ----------------------------------------------------------------------------------- the check


def check_distribution(folder: str | Path, root: Path = REPO_ROOT) -> None:
    """Raise AutograderError unless the distribution in ``folder`` is free of what students must not get.

    It must hold no path under a withheld entry (``solutions/``, ``autograder/``, ``tests/``...), no
    file with nbgrader's solution or hidden-test delimiters, no line of a reference solution or hidden
    test of ``root``'s ``solutions/`` (:func:`secret_lines`), no nbgrader configuration that points at
    the solutions, and no import of the grader or of the instructors' modules.
    """
    folder = Path(folder)
    secrets = secret_lines(root)
    problems = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() or p.is_symlink()):
        relative = path.relative_to(folder).as_posix()
        if relative.split("/")[0] in WITHHELD or path.is_symlink():
            problems.append(f"{relative}: students must not receive it")
            continue
        raw = path.read_bytes().decode("utf-8", errors="replace")
        code = notebook_code(raw) if path.suffix == ".ipynb" else [raw] if path.suffix == ".py" else []
        text = notebook_text(raw) if path.suffix == ".ipynb" else raw
        problems += [f"{relative}: holds nbgrader's '{marker}' delimiter" for marker in MARKERS if marker in raw]
        problems += [
            f"{relative}: holds a line of a solution or hidden test: {line!r}" for line in secrets if line in text
        ]
        if path.name == "nbgrader_config.py" and "solutions" in raw:
            problems.append(f"{relative}: an nbgrader configuration that names the solutions")
        package = relative.split("/")[0]
        for source in code:
            problems += [
                f"{relative}: imports {name}, which students do not receive"
                for name in sorted(imported_modules(source, package))
                if any(name == module or name.startswith(f"{module}.") for module in WITHHELD_MODULES)
            ]
    if problems:
        listed = "\n".join(f"  {problem}" for problem in problems[:30])
        more = f"\n  ... and {len(problems) - 30} more" if len(problems) > 30 else ""
        raise AutograderError(
            f"the student distribution in {folder} gives away what it must not ({len(problems)} findings):\n"
            f"{listed}{more}"
        )


def secret_lines(root: Path = REPO_ROOT) -> set[str]:
    """The lines (stripped, at least MIN_SECRET_LINE long) of the reference solutions and hidden tests
    in ``root``'s ``solutions/``, less those the course shows anyway.

    A solution cell's lines are those between ``### BEGIN SOLUTION`` and ``### END SOLUTION``, or the
    whole cell when it has no delimiters (nbgrader then replaces all of it: the written answers);
    a hidden test's, those between ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS``. Lines the
    course shows anyway are no evidence of a leak: those of the exercises' released parts (a
    solution may repeat a line the exercise gives), of the lectures and of the course's packages
    (an exercise asks for what a lecture taught).
    """
    secret, shown = set(), []
    for path in sorted((root / "solutions").glob("*/*.ipynb")):
        for cell in json.loads(path.read_text()).get("cells", []):
            source = cell_source(cell)
            solution = cell.get("metadata", {}).get("nbgrader", {}).get("solution", False)
            hidden, visible = split_regions(source, whole_cell=bool(solution) and "BEGIN SOLUTION" not in source)
            secret |= hidden
            shown += visible
    shown += [notebook_text(path.read_text()) for path in sorted((root / "course").glob("*.ipynb"))]
    shown += [path.read_text() for package in STUDENT_PACKAGES for path in sorted((root / package).rglob("*.py"))]
    # Found anywhere in what is shown, even inside a longer line, a line is no evidence.
    shown_text = "\n".join(shown)
    return {line for line in secret if len(line) >= MIN_SECRET_LINE and line not in shown_text}


def split_regions(source: str, whole_cell: bool = False) -> tuple[set[str], list[str]]:
    """(lines inside solution or hidden-test delimiters, lines outside them) of a cell, stripped;
    with ``whole_cell`` every line is inside."""
    inside: set[str] = set()
    outside: list[str] = []
    within = whole_cell
    for line in source.splitlines():
        stripped = line.strip()
        if stripped.startswith("###") and any(marker in stripped for marker in MARKERS):
            within = True
        elif stripped.startswith("###") and ("END SOLUTION" in stripped or "END HIDDEN TESTS" in stripped):
            within = whole_cell
        elif stripped:
            if within:
                inside.add(stripped)
            else:
                outside.append(stripped)
    return inside, outside


def cell_source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def notebook_cells(raw: str) -> list[dict] | None:
    """The cells of a notebook's JSON (None if it is not a notebook)."""
    try:
        cells = json.loads(raw).get("cells")
    except (ValueError, AttributeError):
        return None
    return cells if isinstance(cells, list) else None


def notebook_text(raw: str) -> str:
    """A notebook's cell sources and the text of its outputs, unescaped (its JSON if it is not a notebook)."""
    cells = notebook_cells(raw)
    if cells is None:
        return raw
    texts = []
    for cell in cells:
        texts.append(cell_source(cell))
        texts += [text for output in cell.get("outputs", []) for text in strings_in(output)]
    return "\n".join(texts)


def notebook_code(raw: str) -> list[str]:
    """The sources of a notebook's code cells (the whole JSON if it is not a notebook)."""
    cells = notebook_cells(raw)
    if cells is None:
        return [raw]
    return [cell_source(cell) for cell in cells if cell.get("cell_type") == "code"]


def strings_in(value) -> list[str]:
    """Every string inside an output: its text, traceback and every data format, lists joined."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return ["".join(value)]
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    return [text for item in items for text in strings_in(item)]


def imported_modules(source: str, package: str) -> set[str]:
    """The modules ``source`` imports, relative imports resolved inside ``package``; ``from a import b``
    counts ``a`` and ``a.b`` (b may be a module). IPython's magics and shell lines are left out; a source
    that is still not Python is read line by line for ``import`` and ``from ... import``."""
    python = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())
    try:
        nodes = [node for node in ast.walk(ast.parse(python)) if isinstance(node, (ast.Import, ast.ImportFrom))]
    except SyntaxError:
        nodes = []
        for line in python.splitlines():
            try:
                nodes += [
                    node for node in ast.parse(line.strip()).body if isinstance(node, (ast.Import, ast.ImportFrom))
                ]
            except SyntaxError:
                continue
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
            continue
        base = node.module or ""
        if node.level:
            parent = package.split(".")[: max(len(package.split(".")) - node.level + 1, 0)]
            base = ".".join([*parent, *([base] if base else [])])
        found |= {base} | {f"{base}.{alias.name}" for alias in node.names if alias.name != "*"}
    return found
