"""What students receive (autograder.distribute): the course without its solutions, hidden tests or
grader, which sets up and runs from the distribution alone.

* the distribution holds the lectures, the released exercises, the packages and the environment,
  nothing from solutions/, tests/ or autograder/, and its own check finds nothing; a solution line,
  a hidden-test delimiter, the solutions folder, an import of the grader or the course's
  nbgrader configuration planted in a copy each make the check fail, and then nothing is written;
* the archive is the same bytes every time;
* a student's environment (a throwaway venv on the course's installed packages, the distribution
  installed in it as its run.sh does) imports mlhep and data_fetch from the distribution and has no
  grader; the students' set-up hides nbgrader's instructor tools (Create Assignment, Formgrader,
  Course List) from JupyterLab and the server, and keeps Validate and the Assignment List;
* marked ``notebooks``: lesson 00's lecture runs from the distribution at CI scale with its expected
  figures (it needs the CI-scale cms_ad sample in the data cache, as tests/test_notebooks.py does:
  ``bash run.sh test`` fetches it; without it the test is skipped rather than generating it), and
  lesson 00's exercise, unanswered, runs up to its first task and stops there with NotImplementedError.

About a minute on two cores.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tomllib
from pathlib import Path

import nbformat
import pytest
from dataset_helpers import key
from jupyter_client.kernelspec import KernelSpecManager
from papermill.exceptions import PapermillExecutionError
from traitlets.config.loader import PyFileConfigLoader

from autograder.course import REPO_ROOT, AutograderError, UsageError, find_assignments, notebook_names
from autograder.distribute import (
    INSTRUCTOR_MODULES,
    build_student_distribution,
    check_distribution,
    course_files,
    secret_lines,
)
from data_fetch import cache
from data_fetch.registry import get_spec
from mlhep.figures import read_figures
from mlhep.notebooks import run_notebook

from notebook_expectations import EXPECTATIONS

LECTURE = "course/00_getting_started.ipynb"
EXERCISE = "exercises/00_getting_started/00_getting_started.ipynb"
SOLUTION = REPO_ROOT / "solutions/00_getting_started/00_getting_started.ipynb"
#: Made by the distribution rather than copied from the repository.
GENERATED = {"README.md", "run.sh", "nbgrader_config.py", "pyproject.toml"}
INSTRUCTOR_LAB_PLUGINS = {
    "@jupyter/nbgrader:create-assignment",
    "@jupyter/nbgrader:formgrader",
    "@jupyter/nbgrader:course-list",
}
STUDENT_LAB_PLUGINS = {"@jupyter/nbgrader:validate-assignment", "@jupyter/nbgrader:assignment-list"}
SERVER_EXTENSIONS = {
    "nbgrader.server_extensions.formgrader": False,
    "nbgrader.server_extensions.course_list": False,
    "nbgrader.server_extensions.validate_assignment": True,
    "nbgrader.server_extensions.assignment_list": True,
}
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def distribution(tmp_path_factory) -> Path:
    return build_student_distribution(tmp_path_factory.mktemp("published") / "mlhep-students")


def files_of(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


# ----------------------------------------------------------------------------- what is in it


def test_the_distribution_holds_the_course_and_nothing_withheld(distribution):
    files = files_of(distribution)
    assert files == set(course_files()) | GENERATED
    withheld = sorted(f for f in files if f.split("/")[0] in ("solutions", "tests", "autograder", "docs", ".ci"))
    assert not withheld, f"students must not receive {withheld}"
    assert not set(INSTRUCTOR_MODULES) & files
    for assignment in find_assignments():
        assert f"course/{assignment}.ipynb" in files
        assert {f"exercises/{assignment}/{name}" for name in notebook_names(assignment)} <= files
    for name in ("mlhep", "data_fetch"):
        assert (distribution / name / "__init__.py").is_file()
    for path in distribution.rglob("*"):
        if path.is_file():
            text = path.read_bytes().decode("utf-8", errors="replace")
            assert "BEGIN SOLUTION" not in text and "BEGIN HIDDEN TESTS" not in text, path
    check_distribution(distribution)  # the build ran it too; it must pass on its result


def test_the_secret_lines_cover_every_solution_of_lesson_00():
    secrets = secret_lines()
    assert len(secrets) > 500
    answered = [line for line in solution_lines(SOLUTION) if line in secrets]
    assert len(answered) >= 5, "lesson 00's solutions must give the check lines to look for"


def test_the_students_pyproject_installs_only_their_packages(distribution):
    student = tomllib.loads((distribution / "pyproject.toml").read_text())
    course = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert student["tool"]["setuptools"]["packages"] == ["data_fetch", "mlhep"]
    assert student["project"] == course["project"]  # the same pins, version and README name
    assert "mypy" not in student["tool"] and "pytest" not in student["tool"]


def test_the_students_nbgrader_config_keeps_the_course_limits_and_names_no_solutions(distribution):
    student = PyFileConfigLoader("nbgrader_config.py", path=str(distribution)).load_config()
    course = PyFileConfigLoader("nbgrader_config.py", path=str(REPO_ROOT)).load_config()
    for section, name in [
        ("CourseDirectory", "course_id"),
        ("Execute", "timeout"),
        ("ExecutePreprocessor", "timeout"),
        ("ExecutePreprocessor", "interrupt_on_timeout"),
    ]:
        assert student[section][name] == course[section][name], f"{section}.{name}"
    assert "source_directory" not in student.get("CourseDirectory", {})
    assert "solutions" not in (distribution / "nbgrader_config.py").read_text()


def test_the_students_run_sh_sets_up_fetches_data_and_opens_lab_only(distribution):
    script = (distribution / "run.sh").read_text()
    commands = set(re.findall(r"^\s+([a-z]+)\)", script, re.M))
    assert commands == {"setup", "data", "lab"}
    assert "solutions" not in script and "autograder" not in script and "pytest" not in script
    uv_pin = re.compile(r"^UV_VERSION=(\S+)$", re.M)
    assert uv_pin.findall(script) == uv_pin.findall((REPO_ROOT / "run.sh").read_text())
    assert os.access(distribution / "run.sh", os.X_OK)
    result = subprocess.run(
        [str(BIN / "shellcheck"), str(distribution / "run.sh")], capture_output=True, text=True
    )
    assert result.returncode == 0, f"shellcheck found problems:\n{result.stdout}"


def test_the_students_readme_lists_every_lesson(distribution):
    readme = (distribution / "README.md").read_text()
    version = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert f"release {version}" in readme and "{" not in readme
    for lecture in sorted((distribution / "course").glob("*.ipynb")):
        assert f"`course/{lecture.name}`" in readme and f"`exercises/{lecture.stem}/`" in readme


def make_course_tree(root: Path) -> None:
    """A small course folder: files students receive, and what must stay behind."""
    for relative in [
        "course/00_a.ipynb",
        "course/.ipynb_checkpoints/00_a-checkpoint.ipynb",
        "exercises/00_a/00_a.ipynb",
        "mlhep/__init__.py",
        "mlhep/__pycache__/__init__.cpython-311.pyc",
        "mlhep/build.py",
        "data_fetch/__init__.py",
        "solutions/00_a/00_a.ipynb",
        "tests/test_a.py",
        "autograder/__init__.py",
        ".venv/lib/site.py",
        "LICENSE",
        "requirements.lock",
        "CONTRIBUTING.md",
    ]:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text("")


RECEIVED = [
    "LICENSE",
    "course/00_a.ipynb",
    "data_fetch/__init__.py",
    "exercises/00_a/00_a.ipynb",
    "mlhep/__init__.py",
]


def test_outside_a_git_checkout_the_allowed_folders_are_walked_without_caches(tmp_path):
    make_course_tree(tmp_path)
    assert course_files(tmp_path) == [*RECEIVED, "requirements.lock"]


def test_in_a_git_checkout_only_tracked_files_are_taken(tmp_path):
    make_course_tree(tmp_path)
    git = ["git", "-C", str(tmp_path)]
    subprocess.run([*git, "init", "--quiet"], check=True)
    subprocess.run([*git, "add", "--", *RECEIVED, "solutions", "tests", "autograder"], check=True)
    (tmp_path / "mlhep" / "scratch.py").write_text("")  # untracked: a student would not want it either
    assert course_files(tmp_path) == RECEIVED


# ---------------------------------------------------------------------- the check catches leaks


def solution_lines(path: Path) -> list[str]:
    """The lines between nbgrader's solution delimiters in a solution notebook, stripped."""
    lines = []
    for cell in nbformat.read(path, as_version=4).cells:
        inside = False
        for line in cell.source.splitlines():
            if "BEGIN SOLUTION" in line or "END SOLUTION" in line:
                inside = "BEGIN" in line
            elif inside and line.strip():
                lines.append(line.strip())
    return lines


def a_secret_line() -> str:
    return next(line for line in solution_lines(SOLUTION) if line in secret_lines())


def add_code_cell(notebook: Path, source: str) -> None:
    nb = nbformat.read(notebook, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(source))
    nbformat.write(nb, notebook)


def append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


PLANTS = {
    "a solution line in a package": (
        lambda dist: append(dist / "mlhep/plotting.py", f"\n# {a_secret_line()}\n"),
        "holds a line of a solution",
    ),
    "a solution line in an exercise's cell": (
        lambda dist: add_code_cell(dist / EXERCISE, f"def helper(objects):\n    {a_secret_line()}\n"),
        "holds a line of a solution",
    ),
    "a hidden test": (
        lambda dist: add_code_cell(dist / EXERCISE, "### BEGIN HIDDEN TESTS\nassert True\n### END HIDDEN TESTS"),
        "BEGIN HIDDEN TESTS",
    ),
    "the solutions folder": (
        lambda dist: shutil.copytree(
            REPO_ROOT / "solutions/00_getting_started", dist / "solutions/00_getting_started"
        ),
        "solutions/00_getting_started/00_getting_started.ipynb: students must not receive it",
    ),
    "an import of the grader": (
        lambda dist: append(dist / "mlhep/plotting.py", "\nfrom autograder.course import REPO_ROOT\n"),
        "imports autograder.course",
    ),
    "an import of the course build": (
        lambda dist: add_code_cell(
            dist / "course/00_getting_started.ipynb", "%matplotlib inline\nimport mlhep.build"
        ),
        "imports mlhep.build",
    ),
    "the course's nbgrader configuration": (
        lambda dist: shutil.copyfile(REPO_ROOT / "nbgrader_config.py", dist / "nbgrader_config.py"),
        "names the solutions",
    ),
}


@pytest.mark.parametrize("plant", PLANTS, ids=str)
def test_a_planted_leak_fails_the_check(plant, distribution, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(distribution, copy)  # which passes the check (the build checked it)
    leak, message = PLANTS[plant]
    leak(copy)
    with pytest.raises(AutograderError, match=re.escape(message)):
        check_distribution(copy)


def test_a_failed_check_writes_nothing(tmp_path, monkeypatch):
    from autograder import distribute

    write = distribute.write_distribution

    def write_with_a_leak(folder, root=REPO_ROOT):
        write(folder, root)
        append(folder / "data_fetch/cms_ad.py", f"\n# {a_secret_line()}\n")

    monkeypatch.setattr(distribute, "write_distribution", write_with_a_leak)
    for archive in (False, True):
        with pytest.raises(AutograderError, match="gives away"):
            build_student_distribution(tmp_path / "out", archive=archive)
    assert list(tmp_path.iterdir()) == [], "nothing, not even a temporary folder, may stay behind"


# ------------------------------------------------------------------- destinations and the archive


def test_a_destination_inside_the_repository_or_not_empty_is_refused(tmp_path):
    with pytest.raises(UsageError, match="inside the course repository"):
        build_student_distribution(REPO_ROOT / "build" / "students")
    with pytest.raises(UsageError, match="inside the course repository"):
        build_student_distribution(REPO_ROOT / "students", archive=True)
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "notes.txt").write_text("a lecturer's notes")
    with pytest.raises(UsageError, match="not empty"):
        build_student_distribution(tmp_path / "old")
    (tmp_path / "old.tar.gz").write_bytes(b"")
    with pytest.raises(UsageError, match="exists already"):
        build_student_distribution(tmp_path / "old", archive=True)
    assert (tmp_path / "old" / "notes.txt").read_text() == "a lecturer's notes"
    (tmp_path / "empty").mkdir()
    assert build_student_distribution(tmp_path / "empty") == tmp_path / "empty"
    assert (tmp_path / "empty" / "run.sh").is_file()


def test_the_archive_is_reproducible_and_holds_the_distribution(distribution, tmp_path):
    first = build_student_distribution(tmp_path / "a" / "mlhep-students", archive=True)
    second = build_student_distribution(tmp_path / "b" / "mlhep-students.tar.gz", archive=True)
    assert first.name == second.name == "mlhep-students.tar.gz"
    assert first.read_bytes() == second.read_bytes()
    with tarfile.open(first) as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        assert names == sorted(names)
        assert {(m.uid, m.gid, m.uname, m.gname, m.mtime) for m in members} == {(0, 0, "", "", members[0].mtime)}
        files = {m.name.removeprefix("mlhep-students/") for m in members if m.isfile()}
        assert files == files_of(distribution)
        assert tar.getmember("mlhep-students/run.sh").mode == 0o755
        assert tar.getmember("mlhep-students/LICENSE").mode == 0o644
        assert tar.extractfile("mlhep-students/README.md").read() == (distribution / "README.md").read_bytes()


# -------------------------------------------------------------------- a student's environment


@pytest.fixture(scope="module")
def student(distribution, tmp_path_factory):
    """A student's environment: a throwaway venv that sees the course's installed packages (without
    the repository's own editable install), the distribution installed in it as its run.sh does,
    the `mlhep` kernel registered in it, and nbgrader's Jupyter configuration as installing nbgrader
    leaves it. Returns (its python, the environment variables to run Jupyter with it)."""
    root = tmp_path_factory.mktemp("student")
    venv = root / "venv"
    # .venv is a venv itself, so --system-site-packages would give the base interpreter's packages:
    # a path file gives .venv's, without processing its .pth files (the repository's editable install).
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(purelib) / "course_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    shutil.copytree(Path(sys.prefix) / "etc" / "jupyter", venv / "etc" / "jupyter")
    env = {
        **os.environ,
        # nbgrader's lab extension and the kernel: .venv's data files, after the student's own.
        "JUPYTER_PATH": os.pathsep.join(
            [str(venv / "share" / "jupyter"), str(Path(sys.prefix) / "share" / "jupyter")]
        ),
        "JUPYTER_CONFIG_DIR": str(root / "user-config"),
        "JUPYTER_DATA_DIR": str(root / "user-data"),
    }
    env.pop("PYTHONPATH", None)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-cache-dir"]
    subprocess.run(
        [*pip, "--no-index", "--no-deps", "--no-build-isolation", "-e", str(distribution)], env=env, check=True
    )
    kernel = [
        "-m",
        "ipykernel",
        "install",
        "--sys-prefix",
        "--name",
        "mlhep",
        "--display-name",
        "Python (mlhep course)",
    ]
    subprocess.run([str(python), *kernel], env=env, check=True, capture_output=True)
    return python, env


def test_the_students_environment_imports_the_distributions_packages_and_no_grader(student, distribution):
    python, env = student
    probe = (
        "import json, importlib.util, mlhep, data_fetch; "
        "print(json.dumps([mlhep.__file__, data_fetch.__file__, importlib.util.find_spec('autograder') is None]))"
    )
    result = subprocess.run(
        [str(python), "-c", probe],
        cwd=distribution / "course",
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    mlhep_file, data_fetch_file, no_grader = json.loads(result.stdout)
    assert Path(mlhep_file) == distribution / "mlhep" / "__init__.py"
    assert Path(data_fetch_file) == distribution / "data_fetch" / "__init__.py"
    assert no_grader, "the distribution's install must not provide the grader"
    kernel = json.loads((python.parent.parent / "share/jupyter/kernels/mlhep/kernel.json").read_text())
    assert kernel["argv"][0] == str(python)


def test_the_students_setup_hides_the_instructor_tools(student, distribution):
    python, env = student
    venv = python.parent.parent
    hide = f'source "{distribution / "run.sh"}" && VENV="{venv}" && hide_instructor_tools'
    subprocess.run(["bash", "-c", hide], env=env, check=True, cwd=distribution)
    # What JupyterLab's page and the server read at start: the page config, and the server extensions.
    probe = (
        "import json; from jupyter_core.paths import jupyter_config_path, jupyter_path; "
        "from jupyterlab_server.config import get_page_config; "
        "from jupyter_server.extension.config import ExtensionConfigManager; "
        "page = get_page_config(jupyter_path('labextensions')); "
        "server = ExtensionConfigManager(read_config_path=jupyter_config_path()).get_jpserver_extensions(); "
        "print(json.dumps([page['disabledExtensions'], page.get('lockedExtensions', []), "
        "[e['name'] for e in page['federated_extensions']], server]))"
    )
    result = subprocess.run([str(python), "-c", probe], env=env, capture_output=True, text=True, check=True)
    disabled, locked, lab_extensions, server = json.loads(result.stdout)
    assert "@jupyter/nbgrader" in lab_extensions
    assert set(disabled) == set(locked) == INSTRUCTOR_LAB_PLUGINS
    assert not STUDENT_LAB_PLUGINS & set(disabled)
    assert {name: server.get(name) for name in SERVER_EXTENSIONS} == SERVER_EXTENSIONS
    config = venv / "etc" / "jupyter" / "labconfig" / "page_config.json"
    assert set(json.loads(config.read_text())["disabledExtensions"]) == INSTRUCTOR_LAB_PLUGINS


# --------------------------------------------------------------------- lesson 00, run as a student


@pytest.fixture
def student_kernel(student, monkeypatch):
    """Papermill in this process starts the `mlhep` kernel of the student's environment."""
    python, env = student
    for name in ("JUPYTER_PATH", "JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR"):
        monkeypatch.setenv(name, env[name])
    monkeypatch.delenv("PYTHONPATH", raising=False)
    assert KernelSpecManager().get_kernel_spec("mlhep").argv[0] == str(python)


@pytest.mark.notebooks
def test_lecture_00_runs_from_the_distribution(distribution, student_kernel, tmp_path):
    expected = EXPECTATIONS[LECTURE]
    parameters = expected["parameters"]
    sample = cache.entry_path(
        "cms_ad", parameters["source"], key(get_spec("cms_ad"), parameters["n_events"], parameters["seed"])
    )
    if not sample.exists():
        pytest.skip(
            f"the CI-scale cms_ad sample is not in the data cache {cache.cache_root()}; "
            "`.venv/bin/python -m data_fetch fetch-course --scale ci --lesson 00` produces it"
        )
    executed = run_notebook(distribution / LECTURE, tmp_path / "lecture.ipynb", parameters)
    figures = read_figures(executed)
    for name, want in expected["figures"].items():
        got = figures.get(name)
        if isinstance(want, tuple):
            assert isinstance(got, (int, float)) and want[0] <= got <= want[1], f"{name} = {got}, expected {want}"
        else:
            assert got == want, f"{name} = {got!r}, expected {want!r}"


@pytest.mark.notebooks
def test_exercise_00_unanswered_runs_up_to_its_first_task(distribution, student_kernel, tmp_path):
    # An unanswered task defines its function with `raise NotImplementedError()` as the body: the first
    # test cell after it, calling the function, is where the run must stop, with everything before it run.
    output = tmp_path / "exercise.ipynb"
    with pytest.raises(PapermillExecutionError) as raised:
        run_notebook(distribution / EXERCISE, output)
    assert raised.value.ename == "NotImplementedError"
    released = nbformat.read(distribution / EXERCISE, as_version=4).cells
    first_task = next(
        i for i, cell in enumerate(released) if nbgrader(cell).get("solution") and cell.cell_type == "code"
    )
    assert "raise NotImplementedError" in released[first_task].source
    first_test = next(i for i in range(first_task + 1, len(released)) if nbgrader(released[i]).get("grade"))
    # Papermill adds markdown cells that point at the error; without them the cells are the exercise's.
    executed = [
        cell
        for cell in nbformat.read(output, as_version=4).cells
        if "papermill-error-cell-tag" not in cell.metadata.get("tags", [])
    ]
    assert [cell.source for cell in executed] == [cell.source for cell in released]
    for i, cell in enumerate(executed):
        if cell.cell_type != "code":
            continue
        errors = [o.ename for o in cell.outputs if o.output_type == "error"]
        if i < first_test:
            assert cell.execution_count is not None and not errors, f"cell {i} should have run cleanly: {errors}"
        elif i == first_test:
            assert errors == ["NotImplementedError"]
        else:
            assert cell.execution_count is None, f"cell {i} ran after the first unanswered task"


def nbgrader(cell) -> dict:
    return cell.metadata.get("nbgrader", {})
