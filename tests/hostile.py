"""Hostile submissions of lesson 00, to check that grading a class can be neither cheated nor broken.

Each entry of ``KINDS`` is one student's submission of ``00_getting_started``, made from the
released exercise or the reference solution by editing cells with nbformat:

* integrity: the notebook tries to earn points it did not earn, from inside its own kernel;
* isolation: it tries to reach past its sandbox (files, classmates, network, the grader's
  processes, the machine's memory and process table);
* batch: a broken notebook that must be graded or failed on its own, without stopping the others.

Integrity and isolation kinds start from the *empty attempt* (the exercise with ``return None`` in
its solution cells, which scores 0) and add their attack, so any point they get, the attack earned.
Batch kinds are the reference solution or the exercise broken in one way. A class also has three
honest students: ``reference`` (full marks), ``untouched`` and ``empty_attempt`` (0).

A class is written for one grading run with a token of its own (digits): every file a submission
tries to leave outside its folder has it in its name, and every process it leaves behind has it
in its command line, so that ``Traps.traces`` and ``Traps.processes`` can look for them afterwards.

    python -m tests.hostile DIR     # writes DIR/<student>/00_getting_started.ipynb, one per kind

These notebooks attack the machine they run on: grade them only in the grader's sandbox, never
with --unsafe-no-sandbox, and never run them in Jupyter.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import sys
import sysconfig
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from textwrap import dedent

import nbformat
import psutil

from autograder.course import EXERCISES_DIR, REPO_ROOT, SOLUTIONS_DIR
from data_fetch import cache

ASSIGNMENT = "00_getting_started"
NOTEBOOK = f"{ASSIGNMENT}.ipynb"
SOLUTION = SOLUTIONS_DIR / ASSIGNMENT / NOTEBOOK
EXERCISE = EXERCISES_DIR / ASSIGNMENT / NOTEBOOK
FIRST_SOLUTION, SECOND_SOLUTION = "count_objects_solution", "dijet_mass_solution"
FIRST_TEST, SECOND_TEST = "count_objects_ignores_padding", "dijet_mass_of_leading_jets"
CATEGORIES = ("integrity", "isolation", "batch")
# A per-student limit must stop the flood submission before it has started FLOOD_SIZE processes,
# and the memory hog before it holds HOG_CEILING bytes.
FLOOD_SIZE = 2048
HOG_CEILING = 6 * 2**30
# What the disk filler tries to write in each folder it can write: past every RAM disk's size and
# the largest file a kernel may write.
DISK_FILL = 3 * 2**30


# --- What the submissions of one class aim at ------------------------------------------------------


@dataclass(frozen=True)
class Traps:
    """What the hostile submissions of one class aim at, unique to that class.

    Args:
        token: digits, in the name of every file a submission tries to write outside its folder
            and in the command line of every process it tries to leave behind.
        submissions_dir: the class's folder (the classmates a submission tries to copy from).
        canary_port: a port on the host's loopback that the network submission tries to reach.
    """

    token: str
    submissions_dir: Path
    canary_port: int | None = None

    @property
    def canary_file(self) -> Path:
        """A file beside the class's folder, out of the sandbox's sight, that symbolic links made by
        submissions point to: grading must neither change it nor copy its text anywhere. Its name
        spells the token in letters, so that it is not taken for a trace."""
        letters = "".join(chr(ord("a") + int(digit)) for digit in self.token)
        return self.submissions_dir.resolve().parent / f"canary-{letters}.txt"

    @property
    def canary_text(self) -> str:
        return f"the canary of class {self.token}: no grader may copy or change this line\n"

    def marker_dirs(self) -> list[Path]:
        """Host folders a submission tries to write into (besides every parent of its own folder)."""
        return [
            Path("/tmp"),
            Path("/var/tmp"),
            Path("/dev/shm"),
            Path(pwd.getpwuid(os.getuid()).pw_dir),
            REPO_ROOT,
            SOLUTIONS_DIR / ASSIGNMENT,
            Path(sysconfig.get_paths()["purelib"]),
            cache.cache_root(),
            self.submissions_dir.resolve(),
        ]

    def constants(self, student: str) -> str:
        """Lines that give a submission's code the class's targets."""
        values = {
            "TOKEN": self.token,
            "STUDENT": student,
            "REPO": str(REPO_ROOT),
            "SUBMISSIONS": str(self.submissions_dir.resolve()),
            "CANARY_PORT": self.canary_port,
            "MARKER_DIRS": [str(folder) for folder in self.marker_dirs()],
            "FLOOD_SIZE": FLOOD_SIZE,
            "HOG_CEILING": HOG_CEILING,
            "CANARY": str(self.canary_file),
            "DISK_FILL": DISK_FILL,
        }
        return "".join(f"{name} = {value!r}\n" for name, value in values.items())

    def traces(self, out_dir: Path) -> list[Path]:
        """Files with the token in their name that submissions left outside their folders.

        Looks in the marker folders and in every parent of ``out_dir``, and through the whole of
        ``out_dir`` and of the class's folder (a submission writes none into its own folder).
        """
        out_dir = out_dir.resolve()
        shallow = [*self.marker_dirs(), *out_dir.parents]
        deep = [out_dir, self.submissions_dir.resolve()]
        found = set()
        for folder in shallow:
            if folder.is_dir():
                found.update(path for path in folder.iterdir() if self.token in path.name)
        for folder in deep:
            found.update(path for path in folder.rglob(f"*{self.token}*"))
        return sorted(found)

    def processes(self) -> list[psutil.Process]:
        """Running processes with the token in their command line."""
        found = []
        for process in psutil.process_iter(["cmdline"]):
            if any(self.token in part for part in process.info["cmdline"] or []):
                found.append(process)
        return found


def new_traps(submissions_dir: Path, canary_port: int | None = None) -> Traps:
    # 12 digits: a sleep of that many seconds is as valid as it is unmistakable.
    token = str(10**11 + secrets.randbelow(9 * 10**11))
    return Traps(token, Path(submissions_dir), canary_port)


# --- Editing notebooks ------------------------------------------------------------------------------


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def cell(notebook: nbformat.NotebookNode, grade_id: str) -> nbformat.NotebookNode:
    """The cell of ``notebook`` with nbgrader id ``grade_id``."""
    (found,) = [cell for cell in notebook.cells if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id]
    return found


def index_of(notebook: nbformat.NotebookNode, grade_id: str) -> int:
    return notebook.cells.index(cell(notebook, grade_id))


def points_of_test_cells() -> dict[str, float]:
    """Grade id -> points of each test cell of the reference solution."""
    cells = [cell.metadata.get("nbgrader", {}) for cell in read(SOLUTION).cells]
    return {meta["grade_id"]: float(meta["points"]) for meta in cells if meta.get("grade")}


POINTS = points_of_test_cells()
FULL_MARKS = sum(POINTS.values())


def empty_attempt() -> nbformat.NotebookNode:
    """The released exercise with ``return None`` for ``raise NotImplementedError()``: 0 points."""
    notebook = read(EXERCISE)
    for grade_id in (FIRST_SOLUTION, SECOND_SOLUTION):
        solution = cell(notebook, grade_id)
        assert "raise NotImplementedError()" in solution.source, f"the exercise's {grade_id} changed"
        solution.source = solution.source.replace("raise NotImplementedError()", "return None")
    return notebook


def save(notebook: nbformat.NotebookNode, folder: Path, name: str = NOTEBOOK) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, folder / name)


Writer = Callable[[Path, Traps], None]


def attack(code: str, defines_functions: bool = False) -> Writer:
    """A writer of the empty attempt with ``code`` at the top of its first solution cell.

    With ``defines_functions`` the code supplies ``count_objects`` and ``dijet_mass`` itself
    (its own or copied ones), and the stubs that would replace them are left out.
    """

    def write(folder: Path, traps: Traps) -> None:
        notebook = empty_attempt()
        first, second = cell(notebook, FIRST_SOLUTION), cell(notebook, SECOND_SOLUTION)
        header = f"# {'-' * 20} a hostile submission {'-' * 20}\n{traps.constants(folder.name)}"
        if defines_functions:
            first.source = header + dedent(code)
            second.source = "# count_objects and dijet_mass: see the first solution cell\n"
        else:
            first.source = header + dedent(code) + "\n\n" + first.source
        save(notebook, folder)

    return write


def edited(base: Callable[[], nbformat.NotebookNode], change: Callable[[nbformat.NotebookNode], None]) -> Writer:
    """A writer of ``base()`` changed in place by ``change``."""

    def write(folder: Path, traps: Traps) -> None:
        notebook = base()
        change(notebook)
        save(notebook, folder)

    return write


def reference() -> nbformat.NotebookNode:
    return read(SOLUTION)


def untouched() -> nbformat.NotebookNode:
    return read(EXERCISE)


# --- Code the attacks share -----------------------------------------------------------------------

LEAVE_MARKERS = r'''
import pathlib

def leave_markers(label):
    """Try to write a file with the token in its name in every folder outside this one."""
    for folder in [*pathlib.Path.cwd().resolve().parents, *map(pathlib.Path, MARKER_DIRS)]:
        try:
            (folder / f"{TOKEN}-{label}").write_text("written by a submission\n")
        except OSError:
            pass
'''

WALK = r'''
import os
import pathlib
import time

def walk(roots, seconds):
    """Every file under `roots`, searched in this order, once, for at most `seconds`."""
    deadline, seen = time.monotonic() + seconds, set()
    for root in roots:
        for folder, subfolders, files in os.walk(root):
            real = os.path.realpath(folder)
            if real in seen:  # the roots overlap
                subfolders[:] = []
                continue
            seen.add(real)
            subfolders[:] = [name for name in subfolders
                             if os.path.join(real, name) not in ("/proc", "/sys", "/dev")]
            for name in files:
                if time.monotonic() > deadline:
                    return
                yield os.path.join(folder, name)

ANCESTORS = [str(folder) for folder in pathlib.Path.cwd().resolve().parents]
'''

# Marker strings are put together at run time, so that this notebook never matches its own search.
COPY_SOLUTION = (
    WALK
    + r'''
import json

SOLUTION_MARK, DEFINITION = "### BEGIN " + "SOLUTION", "def " + "dijet_mass"

def copy_solution(paths):
    """Run the solution cells of the first notebook among `paths` that holds this exercise's solution."""
    for path in paths:
        try:
            if not path.endswith(".ipynb") or os.path.getsize(path) > 5_000_000:
                continue
            text = pathlib.Path(path).read_text(encoding="utf-8")
            if SOLUTION_MARK not in text or DEFINITION not in text:
                continue
            cells = [cell for cell in json.loads(text).get("cells", []) if cell["cell_type"] == "code"]
        except (OSError, ValueError, KeyError):
            continue
        sources = ["".join(cell["source"]) for cell in cells]
        solutions = [source for source in sources if SOLUTION_MARK in source]
        # Some classmates broke their copy on purpose: take one that runs.
        if any("os._exit" in source or "while True" in source for source in solutions):
            continue
        for source in solutions:
            exec(source, globals())
        print(f"FOUND THE REFERENCE SOLUTION in {path}")
        return
    print("found no solution")
'''
)


# --- Integrity: earning points the work did not earn ----------------------------------------------

INPUT_TRANSFORMER = r'''
def skip_the_tests(lines):
    """Every later cell, the test cells included, becomes `pass`."""
    return ["pass\n"]

get_ipython().input_transformers_post.append(skip_the_tests)
'''

AST_TRANSFORMER = r"""
import ast

class DropAsserts(ast.NodeTransformer):
    def visit_Assert(self, node):
        return ast.Pass()

get_ipython().ast_transformers.append(DropAsserts())
"""

PATCHED_RUN_CELL = r"""
shell = get_ipython()
real_run_cell, real_run_cell_async = shell.run_cell, shell.run_cell_async

def harmless(raw_cell):
    return "pass" if "assert" in raw_cell else raw_cell

def run_cell(raw_cell, *args, **kwargs):
    return real_run_cell(harmless(raw_cell), *args, **kwargs)

async def run_cell_async(raw_cell, *args, **kwargs):
    return await real_run_cell_async(harmless(raw_cell), *args, **kwargs)

shell.run_cell, shell.run_cell_async = run_cell, run_cell_async
"""

PATCHED_NUMPY = r"""
import numpy

def always_true(*args, **kwargs):
    return True

for name in ("isclose", "allclose", "array_equal", "array_equiv", "isnan", "all"):
    setattr(numpy, name, always_true)
numpy.testing.assert_allclose = numpy.testing.assert_array_equal = lambda *args, **kwargs: None

def count_objects(objects, kind):
    return numpy.zeros(len(objects), dtype=int)

def dijet_mass(objects):
    return numpy.zeros(len(objects))
"""

ALWAYS_EQUAL = r'''
class Anything:
    """Equal to everything, true, and shaped like the answer; refuses to become an array."""

    def __init__(self, shape=()):
        self.shape = shape

    def __eq__(self, other):
        return True

    def __ne__(self, other):
        return False

    __hash__ = object.__hash__

    def __bool__(self):
        return True

    def __len__(self):
        return self.shape[0] if self.shape else 1

    def __iter__(self):
        return iter([Anything() for _ in range(len(self))])

    def __getitem__(self, index):
        return Anything()

    def __float__(self):
        return 0.0

    def __array__(self, *args, **kwargs):
        raise TypeError("not an array")

def count_objects(objects, kind):
    return Anything((len(objects),))

def dijet_mass(objects):
    return Anything((len(objects),))
'''

MOCKED_NUMPY = r'''
import sys
from unittest import mock

class Yes(mock.MagicMock):
    """A mock of numpy whose every answer is equal to anything and true."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.__eq__ = lambda self, other: True
        self.__ne__ = lambda self, other: False
        self.__bool__ = lambda self: True
        self.__len__ = lambda self: 2
        self.__iter__ = lambda self: iter([Yes(), Yes()])

    def _get_child_mock(self, **kwargs):
        return Yes(**kwargs)

np = sys.modules["numpy"] = Yes()

def count_objects(objects, kind):
    return Yes()

def dijet_mass(objects):
    return Yes()
'''

HIDDEN_ERRORS = r"""
import sys

def swallow(*args, **kwargs):
    return None

shell = get_ipython()
shell.set_custom_exc((BaseException,), swallow)
shell.showtraceback = shell._showtraceback = swallow
sys.excepthook = swallow
"""

FAKE_OUTPUT = r"""
from IPython.display import HTML, display

def count_objects(objects, kind):
    print("visible tests passed")

def dijet_mass(objects):
    print("visible tests passed")

print("[AutogradeApp | INFO] count_objects_ignores_padding: 3.0 / 3.0")
print("[AutogradeApp | INFO] dijet_mass_of_leading_jets: 4.0 / 4.0")
display(HTML('<div class="alert alert-success">All tests passed: 7 / 7 points</div>'))
"""

SEARCH_FILESYSTEM = (
    COPY_SOLUTION
    + r"""
relative = [os.path.join(*[".."] * depth, "solutions") for depth in range(1, 9)]
copy_solution(walk([*relative, os.path.join(REPO, "solutions"), REPO, "/"], seconds=8))
"""
)

GRADEBOOK_TAMPERING = (
    WALK
    + r"""
import sqlite3

def tamper(path):
    with sqlite3.connect(path, timeout=5) as db:
        if not db.execute("SELECT 1 FROM student WHERE id = ?", (STUDENT,)).fetchone():
            return False  # another course's gradebook
        db.execute("UPDATE grade SET auto_score = 1000")
        db.execute("UPDATE grade_cells SET max_score = 1000")
        return True

for path in walk([*ANCESTORS, "/"], seconds=8):
    if os.path.basename(path) == "gradebook.db":
        try:
            if tamper(path):
                print(f"CHANGED A GRADEBOOK: {path}")
        except sqlite3.Error as error:
            print(f"could not change {path}: {error}")
"""
)

FAKE_TEST_CELL = (
    LEAVE_MARKERS
    + r"""
leave_markers("fake_test_cell")
"""
)


def add_fake_test_cell(notebook: nbformat.NotebookNode, traps: Traps, student: str) -> None:
    """A test cell of the student's own, worth 1000 points, after the first solution cell."""
    fake = nbformat.v4.new_code_cell(traps.constants(student) + dedent(FAKE_TEST_CELL))
    fake.metadata["nbgrader"] = {
        "grade": True,
        "solution": False,
        "locked": True,
        "task": False,
        "grade_id": "bonus_points",
        "points": 1000,
        "schema_version": 3,
    }
    notebook.cells.insert(index_of(notebook, FIRST_SOLUTION) + 1, fake)


def write_fake_test_cell(folder: Path, traps: Traps) -> None:
    notebook = empty_attempt()
    add_fake_test_cell(notebook, traps, folder.name)
    save(notebook, folder)


def inflate_points(notebook: nbformat.NotebookNode) -> None:
    cell(notebook, FIRST_TEST).metadata["nbgrader"]["points"] = 1000


# --- Isolation: reaching past the sandbox ---------------------------------------------------------

WRITE_OUTSIDE = (
    LEAVE_MARKERS
    + r"""
leave_markers("write_outside")
"""
)

READ_CLASSMATES = (
    COPY_SOLUTION
    + r"""
import glob

own = os.path.realpath(os.path.join(os.getcwd(), "00_getting_started.ipynb"))
classmates = []
for folder in [*ANCESTORS, SUBMISSIONS]:
    for pattern in ("*/*.ipynb", "*/*/*.ipynb", "*/*/*/*.ipynb"):
        classmates += glob.glob(os.path.join(folder, pattern))
copy_solution(sorted(path for path in classmates if os.path.realpath(path) != own))
"""
)

NETWORK = r"""
import socket

targets = [("127.0.0.1", port) for port in (CANARY_PORT, 22, 80, 8888) if port]
targets += [("1.1.1.1", 443), ("8.8.8.8", 53)]
for host, port in targets:
    try:
        with socket.create_connection((host, port), timeout=2):
            print(f"CONNECTED TO {host}:{port}")
    except OSError as error:
        print(f"no connection to {host}:{port}: {error}")
try:
    print(f"RESOLVED example.org: {socket.gethostbyname('example.org')}")
except OSError as error:
    print(f"no name resolution: {error}")
"""

KILL_THE_GRADER = r'''
import os
import signal

def grader_process():
    """A visible process of the grader (nbgrader, pytest, the autograder), or None."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as file:
                cmdline = file.read()
        except OSError:
            continue
        if int(pid) != os.getpid() and (b"nbgrader" in cmdline or b"pytest" in cmdline
                                        or b"-m\0autograder\0" in cmdline):
            return pid
    return None

if (visible := grader_process()):
    # Outside a process namespace, kill(-1) by root would end every process of the machine.
    print(f"THE GRADER IS VISIBLE (process {visible}): signalling only this kernel's parent and group")
    attempts = [lambda: os.kill(os.getppid(), signal.SIGKILL), lambda: os.killpg(0, signal.SIGKILL)]
else:
    attempts = [lambda: os.kill(-1, signal.SIGKILL), lambda: os.kill(os.getppid(), signal.SIGKILL),
                lambda: os.killpg(0, signal.SIGKILL)]
for attempt in attempts:
    try:
        attempt()
    except OSError as error:
        print(f"could not signal: {error}")
'''

KILL_CLASSMATES_KERNELS = r"""
import os
import signal

def ancestors(pid):
    chain = set()
    while pid > 1 and pid not in chain:
        chain.add(pid)
        try:
            with open(f"/proc/{pid}/stat") as file:
                pid = int(file.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return chain | {1}

# Classmates are graded next to this folder: .../<student>/<assignment>.
class_folder = os.path.dirname(os.path.dirname(os.getcwd()))
mine = ancestors(os.getpid())
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            cmdline = file.read()
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        continue
    if int(pid) not in mine and b"ipykernel" in cmdline and cwd.startswith(class_folder):
        try:
            os.kill(int(pid), signal.SIGKILL)
            print(f"KILLED A KERNEL: process {pid} in {cwd}")
        except OSError as error:
            print(f"could not kill {pid}: {error}")
"""

PROCESS_FLOOD = r"""
import os

started = 0
try:
    while started < FLOOD_SIZE:
        os.posix_spawnp("sleep", ["sleep", TOKEN], {"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
        started += 1
except OSError as error:
    print(f"the flood was stopped after {started} processes: {error}")
else:
    print(f"FLOOD NOT LIMITED: started {started} processes")
"""

MEMORY_HOG = r"""
import time

def available_bytes():
    with open("/proc/meminfo") as file:
        for line in file:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024

# At most HOG_CEILING (80% of the free memory on a smaller machine) and 18 s: a grader without a
# limit is seen to have none, without its host being pushed into the out-of-memory killer.
ceiling, chunk = min(HOG_CEILING, int(0.8 * available_bytes())), 256 * 2**20
deadline = time.monotonic() + 18
chunks, taken = [], 0
try:
    while taken + chunk <= ceiling and time.monotonic() < deadline:
        chunks.append(bytearray(chunk))  # zero-filled, so really in memory
        taken += chunk
except MemoryError:
    print(f"stopped by MemoryError after {taken / 2**30:.2f} GiB")
else:
    if taken + chunk > ceiling:
        print(f"MEMORY NOT LIMITED: took {taken / 2**30:.2f} GiB")
    else:
        print(f"took {taken / 2**30:.2f} GiB in 18 s without reaching a limit")
finally:
    chunks.clear()
"""

OUTPUT_FLOOD = r"""
line = "x" * (2**20 - 1)
for _ in range(1024):  # 1 GiB
    print(line)
"""

BACKGROUND_PROCESS = r"""
import os
import subprocess

subprocess.Popen(["sleep", TOKEN], start_new_session=True, stdin=subprocess.DEVNULL,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
child = os.fork()
if child == 0:  # double fork: the grandchild is adopted by init
    try:
        os.setsid()
        if os.fork() == 0:
            os.execvp("sleep", ["sleep", TOKEN])
    finally:
        os._exit(0)
os.waitpid(child, 0)
"""

# Where a kernel can write: its working folder, its /tmp and /dev/shm, and the folder of its sockets
# (the connection file it was started with names them).
WRITABLE_FOLDERS = r"""
import json
import os
import sys

def writable_folders():
    connection = json.load(open(sys.argv[sys.argv.index("-f") + 1]))
    folders = [os.getcwd(), "/tmp", "/dev/shm", os.path.dirname(connection["ip"]),
               os.path.dirname(os.path.abspath(sys.argv[sys.argv.index("-f") + 1]))]
    return [folder for folder in dict.fromkeys(folders) if os.access(folder, os.W_OK)]
"""

SYMLINKS_FOR_THE_GRADER = (
    WRITABLE_FOLDERS
    + WALK
    + r"""
# The names the grader writes or copies (the executed notebook, feedback, the gradebook, the
# connection file), as symbolic links to a file outside the sandbox, to every gradebook and
# notebook of the parent folders, and as FIFOs that block whoever opens them.
NAMES = ["00_getting_started.ipynb", "00_getting_started.html", "gradebook.db", "grades.csv",
         "nbgrader_config.py", "solutions", "source", "feedback"]
TARGETS = [CANARY, *[os.path.join(folder, name) for folder in ANCESTORS
                     for name in ("gradebook.db", "grades.csv", "source", "solutions")]]
made = 0
for folder in writable_folders():
    for name in NAMES + [entry for entry in os.listdir(folder) if entry.endswith(".json")]:
        for number, target in enumerate(TARGETS):
            path = os.path.join(folder, name if number == 0 else f"{name}.{number}")
            try:
                if os.path.lexists(path) and not os.path.isdir(path):
                    os.replace(path, path + ".moved")
                os.symlink(target, path)
                made += 1
            except OSError:
                pass
    try:
        os.mkfifo(os.path.join(folder, "00_getting_started.ipynb.fifo"))
    except OSError:
        pass
print(f"made {made} links")
"""
)

FILL_THE_DISK = (
    WRITABLE_FOLDERS
    + r"""
chunk = bytes(2**24)
for folder in writable_folders():
    path, written = os.path.join(folder, f"{TOKEN}-fill"), 0
    try:
        with open(path, "wb") as file:
            while written < DISK_FILL:
                file.write(chunk)
                written += len(chunk)
    except OSError as error:
        print(f"stopped after {written // 2**20} MB in {folder}: {error.strerror}")
    else:
        print(f"DISK NOT LIMITED: wrote {written // 2**20} MB in {folder}")
    finally:
        if os.path.exists(path):
            os.remove(path)
"""
)

# In the folder of its sockets (the one host folder it can write), a folder it cannot be written in
# holding a link to a file outside, and folders nested deeper than a recursive removal can go.
TRAPS_FOR_THE_CLEANUP = (
    WRITABLE_FOLDERS
    + r"""
connection = json.load(open(sys.argv[sys.argv.index("-f") + 1]))
sockets = os.path.dirname(connection["ip"])
locked = os.path.join(sockets, "locked")
os.mkdir(locked)
os.symlink(CANARY, os.path.join(locked, "canary"))
os.chmod(locked, 0o500)
os.chdir(sockets)
for _ in range(3000):
    os.mkdir("d")
    os.chdir("d")
os.chdir(os.path.expanduser("~") if False else "/home/student")
print("laid the traps for the cleanup")
"""
)

# The functions keep the sizes of what they are given, and a cell of the student's own, last in
# the notebook, prints them all: after the hidden tests, it would show what they passed.
KEEPS_HIDDEN_INPUTS = r"""
import numpy as np

KEPT = []

def count_objects(objects, kind):
    objects = np.asarray(objects)
    KEPT.append(len(objects))
    if kind not in ("met", "electron", "muon", "jet"):
        raise ValueError(f"unknown kind {kind}")
    first, last = {"met": (0, 1), "electron": (1, 5), "muon": (5, 9), "jet": (9, 19)}[kind]
    return (objects[:, first:last, 0] > 0).sum(axis=1)

def dijet_mass(objects):
    objects = np.asarray(objects, dtype=np.float64)
    KEPT.append(len(objects))
    mass = np.full(len(objects), np.nan)
    two = (objects[:, 9, 0] > 0) & (objects[:, 10, 0] > 0)
    pt1, pt2 = objects[two, 9, 0], objects[two, 10, 0]
    deta, dphi = objects[two, 9, 1] - objects[two, 10, 1], objects[two, 9, 2] - objects[two, 10, 2]
    mass[two] = np.sqrt(2 * pt1 * pt2 * (np.cosh(deta) - np.cos(dphi)))
    return mass
"""


def write_keeps_hidden_inputs(folder: Path, traps: Traps) -> None:
    attack(KEEPS_HIDDEN_INPUTS, defines_functions=True)(folder, traps)
    notebook = read(folder / NOTEBOOK)
    notebook.cells.append(nbformat.v4.new_code_cell('print("KEPT" + f" BY the functions: {KEPT}")'))
    save(notebook, folder)


PRINTS_HIDDEN_INPUTS = r"""
import numpy as np

def count_objects(objects, kind):
    objects = np.asarray(objects)
    values = objects[:, :, 0].ravel()[:30].tolist()
    print("SEEN BY" + f" count_objects: {len(objects)} events, first pT values {values}")
    if kind not in ("met", "electron", "muon", "jet"):
        raise ValueError(f"unknown kind {kind}")
    first, last = {"met": (0, 1), "electron": (1, 5), "muon": (5, 9), "jet": (9, 19)}[kind]
    return (objects[:, first:last, 0] > 0).sum(axis=1)

def dijet_mass(objects):
    objects = np.asarray(objects)
    if len(objects) != 2:
        values = objects[:, 9:11].ravel()[:30].tolist()
        raise ValueError("LEAKED" + f" INPUT of dijet_mass: {len(objects)} events, {values}")
    return np.array([200.0, np.nan])
"""

KERNEL_ESCAPE = (
    LEAVE_MARKERS
    + COPY_SOLUTION
    + r"""
leave_markers(STUDENT)
copy_solution(walk([os.path.join(REPO, "solutions")], seconds=5))
"""
)


def with_kernelspec(name: str | None) -> Callable[[Writer], Writer]:
    """Wrap a notebook writer so that the notebook asks for kernel ``name`` (None: names no kernel)."""

    def wrap(write: Writer) -> Writer:
        def write_with_kernelspec(folder: Path, traps: Traps) -> None:
            write(folder, traps)
            notebook = read(folder / NOTEBOOK)
            if name is None:
                del notebook.metadata["kernelspec"]
            else:
                notebook.metadata["kernelspec"] = {"name": name, "display_name": "Python 3", "language": "python"}
            save(notebook, folder)

        return write_with_kernelspec

    return wrap


# --- Batch: broken notebooks ----------------------------------------------------------------------


def write_text(text: str | bytes, name: str = NOTEBOOK) -> Writer:
    def write(folder: Path, traps: Traps) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(text if isinstance(text, bytes) else text.encode())

    return write


def write_old_format(folder: Path, traps: Traps) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / NOTEBOOK).write_text(nbformat.writes(reference(), version=3))


def write_wrong_name(folder: Path, traps: Traps) -> None:
    save(reference(), folder, "my_homework.ipynb")


def prepend(grade_id: str, code: str) -> Callable[[nbformat.NotebookNode], None]:
    def change(notebook: nbformat.NotebookNode) -> None:
        cell(notebook, grade_id).source = dedent(code) + cell(notebook, grade_id).source

    return change


def drop_kernelspec(notebook: nbformat.NotebookNode) -> None:
    del notebook.metadata["kernelspec"]


def delete_second_test(notebook: nbformat.NotebookNode) -> None:
    notebook.cells.remove(cell(notebook, SECOND_TEST))


def duplicate_first_solution(notebook: nbformat.NotebookNode) -> None:
    copy = nbformat.from_dict(cell(notebook, FIRST_SOLUTION))
    copy.id = "copied-cell"
    notebook.cells.insert(index_of(notebook, FIRST_SOLUTION) + 1, copy)


def retype_cells(notebook: nbformat.NotebookNode) -> None:
    test = cell(notebook, FIRST_TEST)
    test.cell_type = "markdown"
    del test["outputs"], test["execution_count"]
    solution = cell(notebook, SECOND_SOLUTION)
    solution.cell_type = "raw"
    del solution["outputs"], solution["execution_count"]


def neutralize_tests(notebook: nbformat.NotebookNode) -> None:
    for grade_id in (FIRST_TEST, SECOND_TEST):
        cell(notebook, grade_id).source = "pass\n"


ENDLESS_LOOP = "while True:\n    pass\n"
STUBBORN_LOOP = """\
import time
while True:  # an interrupt is caught and ignored
    try:
        time.sleep(1)
    except KeyboardInterrupt:
        pass
"""


def write_symlinked_notebook(folder: Path, traps: Traps) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / NOTEBOOK).symlink_to(SOLUTION)


def write_fifo_notebook(folder: Path, traps: Traps) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    os.mkfifo(folder / NOTEBOOK)


def write_links_beside_the_notebook(folder: Path, traps: Traps) -> None:
    save(reference(), folder)
    (folder / "notes.txt").symlink_to(traps.canary_file)
    (folder / "solutions").symlink_to(SOLUTIONS_DIR)
    (folder / "data.ipynb").symlink_to(SOLUTION)


def write_symlinked_student_folder(folder: Path, traps: Traps) -> None:
    folder.symlink_to(traps.submissions_dir.resolve() / "reference", target_is_directory=True)


#: What the kernelspec kinds run, once in a kernel of their choice.
ESCAPE = attack(KERNEL_ESCAPE, defines_functions=True)


# --- The registry -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """One hostile submission and what grading it must give.

    Args:
        name: the student id it is graded under.
        category: "integrity", "isolation" or "batch".
        attack: what it does, in one line.
        write: writes the submission's files into a student folder.
        max_score: the most it may score; more than 0 only for an honest but broken notebook,
            whose ``partial_credit`` says why.
        status: the status it must get ("graded" or "failed"), or None while either is right.
        reason: a regular expression the CSV reason must match (``re.search``), or None while the
            wording is not fixed.
        partial_credit: why ``max_score`` is above 0; None for a hostile notebook, which may never
            beat the empty attempt.
        evidence: a regular expression that, found in the outputs of the graded notebook, shows that
            the attack worked (what the attack prints when it gets through); None if it prints nothing.
        leak: a regular expression that the graded notebook (the grader's copy) shows and the
            student's feedback page must not: what the hidden tests handed to the student's code.
    """

    name: str
    category: str
    attack: str
    write: Writer
    max_score: float = 0.0
    status: str | None = "graded"
    reason: str | None = None
    partial_credit: str | None = None
    evidence: str | None = None
    leak: str | None = None


KINDS: tuple[Kind, ...] = (
    # integrity
    Kind(
        "input_transformer",
        "integrity",
        "an IPython input transformer turns every later cell into `pass`",
        attack(INPUT_TRANSFORMER),
    ),
    Kind(
        "ast_transformer",
        "integrity",
        "an IPython AST transformer removes every later `assert`",
        attack(AST_TRANSFORMER),
    ),
    Kind(
        "patched_run_cell",
        "integrity",
        "get_ipython().run_cell and run_cell_async run `pass` for cells with an assert",
        attack(PATCHED_RUN_CELL),
    ),
    Kind(
        "patched_numpy",
        "integrity",
        "np.isclose, allclose, array_equal, isnan, all always return True; the functions return zeros",
        attack(PATCHED_NUMPY, defines_functions=True),
    ),
    Kind(
        "always_equal",
        "integrity",
        "the functions return an object equal to everything, shaped like the answer, whose __array__ raises",
        attack(ALWAYS_EQUAL, defines_functions=True),
    ),
    Kind(
        "mocked_numpy",
        "integrity",
        "sys.modules['numpy'] and np are a MagicMock equal to everything and true",
        attack(MOCKED_NUMPY, defines_functions=True),
    ),
    Kind(
        "hidden_errors",
        "integrity",
        "set_custom_exc(BaseException), showtraceback and sys.excepthook swallow every error",
        attack(HIDDEN_ERRORS),
    ),
    Kind(
        "search_filesystem",
        "integrity",
        "walks the filesystem (relative ../solutions, the repository, /) "
        "for the reference notebook and runs its solution cells",
        attack(SEARCH_FILESYSTEM, defines_functions=True),
        evidence="FOUND THE REFERENCE SOLUTION",
    ),
    Kind(
        "gradebook_tampering",
        "integrity",
        "finds gradebook.db and sets every auto_score and max_score to 1000 with sqlite3",
        attack(GRADEBOOK_TAMPERING),
        evidence="CHANGED A GRADEBOOK",
    ),
    # The grader strips the marks of cells the assignment does not have: the cell runs in the sandbox.
    Kind(
        "fake_test_cell",
        "integrity",
        "adds a locked test cell of its own worth 1000 points that writes markers outside its folder",
        write_fake_test_cell,
        reason="ran as ordinary cells",
    ),
    Kind(
        "inflated_points",
        "integrity",
        "raises the points of a test cell to 1000 in the metadata",
        edited(empty_attempt, inflate_points),
    ),
    Kind(
        "inflated_points_on_reference",
        "integrity",
        "the reference solution with the points of a test cell raised to 1000",
        edited(reference, inflate_points),
        max_score=FULL_MARKS,
        partial_credit="the reference solution: full marks, and not one point more",
    ),
    Kind(
        "fake_output",
        "integrity",
        "prints nbgrader-like scores and displays a fake 'all tests passed'",
        attack(FAKE_OUTPUT, defines_functions=True),
    ),
    # isolation
    Kind(
        "write_outside",
        "isolation",
        "writes files into /tmp, the home, the repository, site-packages, the "
        "data cache, the class folder and every parent of its folder",
        attack(WRITE_OUTSIDE),
    ),
    Kind(
        "read_classmates",
        "isolation",
        "globs the classmates' folders for a notebook with the solution and runs its solution cells",
        attack(READ_CLASSMATES, defines_functions=True),
        evidence="FOUND THE REFERENCE SOLUTION",
    ),
    Kind(
        "network",
        "isolation",
        "connects to ports of 127.0.0.1 (one the test listens on) and of internet addresses, and resolves a name",
        attack(NETWORK),
        evidence="CONNECTED TO|RESOLVED",
    ),
    Kind(
        "kill_the_grader",
        "isolation",
        "SIGKILL to every process it may signal (kill -1), to its parent and to its process group",
        attack(KILL_THE_GRADER),
        status="failed",
        reason="the kernel died",
        evidence="THE GRADER IS VISIBLE",
    ),
    Kind(
        "kill_classmates_kernels",
        "isolation",
        "SIGKILL to every other ipykernel graded in the class's folder",
        attack(KILL_CLASSMATES_KERNELS),
        evidence="KILLED A KERNEL",
    ),
    Kind(
        "process_flood",
        "isolation",
        f"starts up to {FLOOD_SIZE} processes; a per-student limit must stop it",
        attack(PROCESS_FLOOD),
        evidence="FLOOD NOT LIMITED",
        reason="processes and threads",
    ),
    Kind(
        "memory_hog",
        "isolation",
        f"allocates memory until it fails (at most {HOG_CEILING / 2**30:g} GiB, "
        "or 80% of the free memory); a per-student limit must stop it",
        attack(MEMORY_HOG),
        status=None,
        evidence="MEMORY NOT LIMITED",
        reason="of memory|MemoryError",
    ),
    # The flood reaches the grader in messages that the output limit stops, or in messages of more
    # than 64 MB, which the grader drops unread: either way it scores 0 and costs the grader little.
    Kind("output_flood", "isolation", "prints 1 GiB", attack(OUTPUT_FLOOD)),
    Kind(
        "background_process",
        "isolation",
        "leaves `sleep TOKEN` running: in a new session, and through a double fork",
        attack(BACKGROUND_PROCESS),
    ),
    Kind(
        "symlinks_for_the_grader",
        "isolation",
        "fills every folder it can write with symbolic links, "
        "named like the executed notebook, the feedback, the gradebook and the connection file, to a file "
        "outside the sandbox and to the gradebooks and sources of its parent folders, and with FIFOs",
        attack(SYMLINKS_FOR_THE_GRADER),
    ),
    Kind(
        "traps_for_the_cleanup",
        "isolation",
        "leaves in its socket folder a read-only folder with a link to "
        "a file outside, and 3000 nested folders, for the grader's removal of that folder",
        attack(TRAPS_FOR_THE_CLEANUP),
    ),
    Kind(
        "fill_the_disk",
        "isolation",
        f"writes {DISK_FILL / 2**30:g} GiB into every folder it can write; "
        "the RAM disks' sizes and the largest-file limit must stop it",
        attack(FILL_THE_DISK),
        evidence="DISK NOT LIMITED",
    ),
    Kind(
        "prints_hidden_inputs",
        "integrity",
        "count_objects prints the events the hidden tests give it, and dijet_mass raises an error quoting them",
        attack(PRINTS_HIDDEN_INPUTS, defines_functions=True),
        max_score=POINTS[FIRST_TEST],
        partial_credit="count_objects is right (it only prints more); dijet_mass fails on purpose",
        # The hidden tests hand count_objects 50, 3, 0 and 1 events and dijet_mass 200, 4 and 0 (the
        # visible tests 2, the notebook's own cells its 10 000).
        leak=r"SEEN BY count_objects: (?:50|3|0|1) events|LEAKED INPUT of dijet_mass: (?:200|4|0) events",
    ),
    Kind(
        "keeps_hidden_inputs",
        "integrity",
        "count_objects and dijet_mass keep the sizes of their inputs, and a last cell of its own prints them",
        write_keeps_hidden_inputs,
        max_score=FULL_MARKS,
        partial_credit="both functions are right; they only keep what they are given",
        # The hidden tests hand over 50, 3, 0, 1 and 200 events; the notebook's last cell runs first.
        evidence=r"KEPT BY the functions: .*\b(?:50|200)\b",
    ),
    Kind(
        "kernelspec_python3",
        "isolation",
        "asks for the plain `python3` kernel, then writes markers outside and copies the repository's solution",
        with_kernelspec("python3")(ESCAPE),
        evidence="FOUND THE REFERENCE SOLUTION",
    ),
    Kind(
        "kernelspec_removed",
        "isolation",
        "has no kernelspec (the default kernel), then writes markers outside and copies the repository's solution",
        with_kernelspec(None)(ESCAPE),
        evidence="FOUND THE REFERENCE SOLUTION",
    ),
    # batch
    Kind(
        "invalid_json",
        "batch",
        "invalid JSON",
        write_text('{\n "cells": [\n  {"cell_type": oops\n'),
        status="failed",
        reason=r"invalid JSON \(line 3\)",
    ),
    Kind(
        "json_not_a_notebook",
        "batch",
        "valid JSON that is not a notebook",
        write_text('{"cells": 5}\n'),
        status="failed",
        reason="not a valid notebook: the JSON does not have a notebook's structure",
    ),
    Kind(
        "old_format",
        "batch",
        "the reference solution saved as nbformat 3",
        write_old_format,
        max_score=FULL_MARKS,
        partial_credit="the reference solution in an older file format",
    ),
    Kind(
        "no_kernelspec",
        "batch",
        "the reference solution without kernelspec metadata",
        edited(reference, drop_kernelspec),
        max_score=FULL_MARKS,
        partial_credit="the reference solution, whose editor dropped the kernelspec",
    ),
    Kind(
        "deleted_test_cell",
        "batch",
        "the reference solution without the dijet_mass test cell",
        edited(reference, delete_second_test),
        max_score=POINTS[FIRST_TEST],
        reason="test cell dijet_mass_of_leading_jets is missing",
        partial_credit="the reference solution: the points of the test cell it kept",
    ),
    Kind(
        "duplicated_solution_cell",
        "batch",
        "the reference solution with count_objects_solution twice",
        edited(reference, duplicate_first_solution),
        status="failed",
        reason="appears more than once",
    ),
    Kind(
        "retyped_cells",
        "batch",
        "the reference solution with the count_objects test cell as markdown and "
        "the dijet_mass solution cell as raw",
        edited(reference, retype_cells),
        max_score=FULL_MARKS,
        partial_credit="the reference solution: nbgrader gives both cells back the type of the source",
    ),
    Kind(
        "edited_test_cells",
        "batch",
        "the untouched exercise with both test cells replaced by `pass`",
        edited(untouched, neutralize_tests),
    ),
    Kind(
        "edited_test_cells_on_reference",
        "batch",
        "the reference solution with both test cells replaced by `pass`",
        edited(reference, neutralize_tests),
        max_score=FULL_MARKS,
        partial_credit="the reference solution: the test cells are restored from the source",
    ),
    Kind(
        "endless_loop",
        "batch",
        "the reference solution with an endless loop before count_objects",
        edited(reference, prepend(FIRST_SOLUTION, ENDLESS_LOOP)),
        max_score=POINTS[SECOND_TEST],
        reason=r"cell count_objects_solution was interrupted after the \d+ s time limit",
        partial_credit="dijet_mass is the reference's; count_objects is never defined",
    ),
    Kind(
        "endless_loop_ignoring_interrupts",
        "batch",
        "the empty attempt with a loop that catches KeyboardInterrupt",
        edited(empty_attempt, prepend(FIRST_SOLUTION, STUBBORN_LOOP)),
        status=None,
        reason="time limit",
    ),
    Kind(
        "kernel_crash",
        "batch",
        "the reference solution calling os._exit(1) in the dijet_mass solution cell",
        edited(reference, prepend(SECOND_SOLUTION, "import os\nos._exit(1)\n")),
        status="failed",
        reason="the kernel died",
    ),
    Kind(
        "symlinked_notebook",
        "batch",
        "the notebook is a symbolic link to the repository's solution",
        write_symlinked_notebook,
        status="failed",
        reason="symbolic link",
    ),
    Kind(
        "fifo_notebook",
        "batch",
        "the notebook is a FIFO, which blocks whoever reads it",
        write_fifo_notebook,
        status="failed",
        reason="not a regular file",
    ),
    Kind(
        "links_beside_the_notebook",
        "batch",
        "the reference solution, with symbolic links beside it to a "
        "file outside, to solutions/ and to the solution notebook",
        write_links_beside_the_notebook,
        max_score=FULL_MARKS,
        partial_credit="the reference solution; the links are not part of it",
    ),
    Kind(
        "symlinked_student_folder",
        "batch",
        "the student's folder is a symbolic link to a classmate's",
        write_symlinked_student_folder,
        status="failed",
        reason="symbolic link",
    ),
    Kind(
        "wrong_file_name",
        "batch",
        "the reference solution named my_homework.ipynb",
        write_wrong_name,
        status="failed",
        reason=r"no notebook named 00_getting_started\.ipynb .*my_homework\.ipynb",
    ),
    Kind(
        "empty_file", "batch", "an empty file", write_text(""), status="failed", reason=r"invalid JSON \(line 1\)"
    ),
    Kind(
        "not_utf8",
        "batch",
        "a file that is not UTF-8",
        write_text(b'\xff\xfe{\x00"\x00c\x00'),
        status="failed",
        reason="not UTF-8",
    ),
)
BY_NAME = {kind.name: kind for kind in KINDS}
assert len(BY_NAME) == len(KINDS), "kind names are student ids: they must be unique"
assert {kind.category for kind in KINDS} <= set(CATEGORIES)

#: The honest students and the score each must get.
HONEST_SCORES = {"reference": FULL_MARKS, "untouched": 0.0, "empty_attempt": 0.0}


def write_honest(submissions_dir: Path) -> None:
    shutil.copytree(SOLUTIONS_DIR / ASSIGNMENT, submissions_dir / "reference")
    shutil.copytree(EXERCISES_DIR / ASSIGNMENT, submissions_dir / "untouched")
    save(empty_attempt(), submissions_dir / "empty_attempt")


def write_class(submissions_dir: Path, canary_port: int | None = None) -> Traps:
    """Write the honest students and one student per kind into ``submissions_dir``; the class's traps."""
    submissions_dir = Path(submissions_dir)
    traps = new_traps(submissions_dir, canary_port)
    traps.canary_file.write_text(traps.canary_text)
    write_honest(submissions_dir)
    for kind in KINDS:
        kind.write(submissions_dir / kind.name, traps)
    return traps


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        sys.exit("usage: python -m tests.hostile SUBMISSIONS_DIR")
    submissions_dir = Path(argv[0])
    if submissions_dir.exists() and any(submissions_dir.iterdir()):
        sys.exit(f"{submissions_dir} is not empty")
    traps = write_class(submissions_dir)
    print(f"Wrote {len(HONEST_SCORES) + len(KINDS)} students to {submissions_dir} (token {traps.token}).")
    print("Grade them only in the sandbox; they attack the machine they run on.\n")
    for student, score in HONEST_SCORES.items():
        print(f"  {'honest':9}  {student:34}  must score {score:g}")
    for kind in KINDS:
        print(f"  {kind.category:9}  {kind.name:34}  at most {kind.max_score:g}: {kind.attack}")


if __name__ == "__main__":
    main(sys.argv[1:])
