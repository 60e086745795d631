"""A class's submissions: finding each student's, and taking only their notebooks, read as files."""

from __future__ import annotations

import csv
import datetime
import errno
import os
import pwd
import re
import stat
from collections.abc import Sequence
from pathlib import Path

import nbformat

from ..course import SOLUTIONS_DIR, UsageError, notebook_names
from .diagnose import notebook_problem

#: What a student id may be: letters, digits and ``_ . @ -``, starting with a letter, digit or ``_``. It
#: names folders of the private course and nbgrader's globs (no ``..``, ``*``, ``,`` or spaces), and a
#: cell of the CSV files a TA opens in a spreadsheet (no leading ``= + - @``).
VALID_STUDENT_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,127}$")


def find_students(
    submissions_dir: Path, assignment: str | None = None, skipped: list[str] | None = None
) -> dict[str, Path]:
    """Student id -> folder with their submission.

    ``submissions_dir`` is either one folder per student (named by the student id; hidden
    folders skipped), or nbgrader's exchange: its root, a course in it or that course's
    ``inbound/`` folder, whose ``STUDENT+ASSIGNMENT+TIMESTAMP[+...]`` folders hold what students
    submitted with ``nbgrader submit``. From the exchange, each student's latest submission of
    ``assignment`` is graded, by the time in its name (or, where that cannot be read, when the
    folder last changed).

    Which of the two a folder is depends on the folders the grader is given, never on what one
    student's folder holds: a course is a folder holding nothing but nbgrader's ``inbound``,
    ``outbound`` and ``feedback``, and an exchange root one holding nothing but courses. A student
    folder with an ``inbound`` of its own is one student among the others.

    A folder whose name is no student id (:data:`VALID_STUDENT_ID`), or which a student handed in
    under another's name (see :func:`handed_in_by`), is left out, and described in ``skipped``.
    """
    skipped = [] if skipped is None else skipped
    if not submissions_dir.is_dir():
        raise UsageError(f"the submissions folder {submissions_dir} does not exist")
    inbound = exchange_inbound(submissions_dir)
    if inbound is not None:
        from .late import parse_recorded_time

        candidates = []
        for folder in sorted(inbound.iterdir()):
            match = EXCHANGE_SUBMISSION.fullmatch(folder.name)
            if not (folder.is_dir() and not folder.is_symlink() and match and match["assignment"] == assignment):
                continue
            if not VALID_STUDENT_ID.fullmatch(match["student"]):
                skipped.append(f"{folder.name!r}: {match['student']!r} is not a student id")
                continue
            candidates.append((match["student"], match["timestamp"], folder))
        # Owners tell students apart only where they have accounts of their own: not in a copy of the
        # exchange the grader made, nor on a hub whose users share one uid.
        owners = {os.lstat(folder).st_uid for _, _, folder in candidates} - {os.getuid()}
        latest: dict[str, tuple[datetime.datetime, Path]] = {}
        for student, timestamp, folder in candidates:
            if len(owners) > 1 and (other := handed_in_by_someone_else(folder, student)):
                skipped.append(f"{folder.name!r}: handed in by {other}, not by {student}")
                continue
            moment = parse_recorded_time(timestamp) or changed_at(folder)
            if student not in latest or moment > latest[student][0]:
                latest[student] = (moment, folder)
        if not latest:
            raise UsageError(f"the exchange folder {inbound} has no submissions of {assignment}")
        return {student: folder for student, (_, folder) in sorted(latest.items())}
    students = {}
    for folder in sorted(submissions_dir.iterdir()):
        if folder.is_dir() and not folder.name.startswith("."):
            if VALID_STUDENT_ID.fullmatch(folder.name):
                students[folder.name] = folder
            else:
                skipped.append(f"{folder.name!r}: not a student id")
    if not students:
        raise UsageError(
            f"the submissions folder {submissions_dir} has no student folders "
            "(expected one folder per student, named by the student id)"
        )
    return students


def changed_at(folder: Path) -> datetime.datetime:
    """When ``folder`` last changed (its ctime, naive UTC): a time its owner cannot set back."""
    return datetime.datetime.fromtimestamp(os.lstat(folder).st_ctime, datetime.UTC).replace(tzinfo=None)


def handed_in_by_someone_else(folder: Path, student: str) -> str | None:
    """The user who made an exchange submission under ``student``'s name, if not that student.

    The exchange's inbound folder is writable by every student, so its folder names prove nothing;
    the folder's owner does (nbgrader's own ``collect`` makes the same check): the student's account if
    there is one of that name here, else an account of that name or none this machine knows. A folder
    the grader's own account owns (copied by the grader) passes.
    """
    owner = os.lstat(folder).st_uid
    if owner == os.getuid():
        return None
    try:
        expected: int | None = pwd.getpwnam(student).pw_uid
    except KeyError:
        expected = None
    try:
        owner_name: str | None = pwd.getpwuid(owner).pw_name
    except KeyError:
        owner_name = None
    if owner == expected or (expected is None and owner_name in (None, student)):
        return None
    return f"user {owner_name!r}" if owner_name else f"uid {owner}"


def exchange_timestamp(folder: Path) -> str | None:
    """The time in the name of an exchange submission folder (None for a student's own folder)."""
    match = EXCHANGE_SUBMISSION.fullmatch(folder.name)
    return match["timestamp"] if match and folder.parent.name == "inbound" else None


#: Largest roster accepted (a class of thousands is well under 1 MB).
MAX_ROSTER_BYTES = 16 * 2**20
ROSTER_ID_COLUMNS = ("id", "student", "student_id")  # nbgrader's `db student import` reads `id`


def read_roster(path: Path) -> list[str]:
    """The student ids of a class list: a CSV file with an ``id`` (nbgrader's roster), ``student`` or
    ``student_id`` column, or a text file of one id per line. UsageError if it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read the roster {path}: {getattr(error, 'strerror', None) or error}") from None
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise UsageError(f"the roster {path} lists no students")
    header = [name.strip().lower() for name in next(csv.reader([lines[0]]))]
    if len(header) > 1 or header[0] in ROSTER_ID_COLUMNS:
        column = next((header.index(name) for name in ROSTER_ID_COLUMNS if name in header), None)
        if column is None:
            raise UsageError(
                f"the roster {path} has no column named {' or '.join(ROSTER_ID_COLUMNS)} "
                f"(its columns: {', '.join(header)}); name the student ids' column `id`, as nbgrader does"
            )
        ids = [row[column].strip() for row in csv.reader(lines[1:]) if len(row) > column]
    else:
        ids = [line.strip() for line in lines]
    ids = [student for student in ids if student]
    bad = [student for student in ids if not VALID_STUDENT_ID.fullmatch(student)]
    if bad:
        raise UsageError(f"the roster {path} has ids that cannot name a student folder: {', '.join(bad[:5])}")
    repeated = sorted({student for student in ids if ids.count(student) > 1})
    if repeated:
        raise UsageError(f"the roster {path} lists these students more than once: {', '.join(repeated[:5])}")
    return ids


# nbgrader's exchange names a submission STUDENT+ASSIGNMENT+TIMESTAMP, with "+RANDOM" in newer versions;
# the timestamps ("2026-11-22 10:31:02.123456 UTC") sort in time order as text.
EXCHANGE_SUBMISSION = re.compile(r"^(?P<student>[^+]+)\+(?P<assignment>[^+]+)\+(?P<timestamp>[^+]+)(\+[^+]*)?$")


#: What nbgrader's exchange puts in a course's folder.
EXCHANGE_COURSE_ENTRIES = {"inbound", "outbound", "feedback"}


def _visible_entries(folder: Path) -> list[Path]:
    return [entry for entry in folder.iterdir() if not entry.name.startswith(".")]


def _is_exchange_course(folder: Path) -> bool:
    """A course of nbgrader's exchange: an ``inbound`` folder and nothing nbgrader would not put there."""
    inbound = folder / "inbound"
    return (
        inbound.is_dir()
        and not inbound.is_symlink()
        and all(entry.name in EXCHANGE_COURSE_ENTRIES for entry in _visible_entries(folder))
    )


def exchange_inbound(folder: Path) -> Path | None:
    """The ``inbound`` folder if ``folder`` is an nbgrader exchange, a course in it, or the folder itself
    (None: a folder of student folders). An exchange with several courses is a UsageError: name one."""
    if folder.name == "inbound":
        return folder
    if _is_exchange_course(folder):
        return folder / "inbound"
    entries = [entry for entry in _visible_entries(folder) if entry.is_dir()]
    if not entries or not all(not entry.is_symlink() and _is_exchange_course(entry) for entry in entries):
        return None
    if len(entries) > 1:
        courses = ", ".join(sorted(entry.name for entry in entries))
        raise UsageError(
            f"the exchange {folder} holds several courses ({courses}): give the course's folder, e.g. {entries[0]}"
        )
    return entries[0] / "inbound"


#: Largest notebook accepted (the course's notebooks are well under 1 MB without outputs).
MAX_NOTEBOOK_BYTES = 64 * 2**20
MAX_FEEDBACK_BYTES = 256 * 2**20


def open_folder(root: Path, parts: Sequence[str]) -> int:
    """A descriptor of the folder ``root/parts[0]/parts[1]/...``, each part opened without following
    a symbolic link (``root`` is the grader's). OSError with a plain-words ``strerror`` for a link."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
    try:
        for part in parts:
            try:
                inner = os.open(
                    part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), dir_fd=fd
                )
            except OSError as error:
                if error.errno == errno.ELOOP or (
                    error.errno == errno.ENOTDIR
                    and stat.S_ISLNK(os.stat(part, dir_fd=fd, follow_symlinks=False).st_mode)
                ):
                    raise OSError(error.errno, "the submission's folder is a symbolic link") from None
                raise
            os.close(fd)
            fd = inner
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular_file(folder: Path, name: str, max_bytes: int, root: Path | None = None) -> bytes:
    """The bytes of ``folder/name``, read without following a symbolic link anywhere below ``root``
    (default: ``folder``'s parent, whose own path the grader chose).

    Raises OSError (with a plain-words ``strerror``) for a link, a special file (a FIFO, a
    device) or a file over ``max_bytes``: a submission is the student's files, never what they
    point to.
    """
    root = folder.parent if root is None else root
    directory = open_folder(root, folder.relative_to(root).parts)
    try:
        return _read_in(directory, name, max_bytes)
    finally:
        os.close(directory)


def _read_in(directory: int, name: str, max_bytes: int) -> bytes:
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(name, flags, dir_fd=directory)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise OSError(error.errno, "it is a symbolic link, not a file") from None
        raise
    with open(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "it is not a regular file")
        data = file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise OSError(errno.EFBIG, f"it is larger than {max_bytes // 2**20} MB")
    return data


def submission_folder(folder: Path, assignment: str) -> Path:
    """The folder holding the notebooks: the student's, or its subfolder named like the assignment
    if that is a real folder (no link on the way, the student's folder included)."""
    try:
        os.close(open_folder(folder.parent, [folder.name, assignment]))
    except OSError:
        return folder
    return folder / assignment


def copy_submission(folder: Path, dest: Path, assignment: str, notebooks_folder: Path | None = None) -> list[str]:
    """Copy the assignment's notebooks from a student's submission to ``dest``.

    Only the notebooks are copied, each only if it is a regular file of a sane size, read without
    following links; other files are left out, so nothing but notebooks reaches nbgrader (which
    would copy them on into the feedback). Notebooks nbgrader cannot read are left out too.
    ``notebooks_folder``: the folder :func:`submission_folder` chose, if the caller looked already (so that
    what it checks and what is copied are the same folder). Returns the problems found, in plain words
    (an empty list when there are none).
    """
    root = folder.parent  # the grader's: the submissions folder or the exchange's inbound
    folder = submission_folder(folder, assignment) if notebooks_folder is None else notebooks_folder
    dest.mkdir(parents=True, exist_ok=True)
    problems = []
    names = notebook_names(assignment)
    for name in names:
        path = dest / name
        try:
            path.write_bytes(read_regular_file(folder, name, MAX_NOTEBOOK_BYTES, root=root))
        except FileNotFoundError:
            listing = open_folder(root, folder.relative_to(root).parts)
            try:
                others = sorted(
                    entry for entry in os.listdir(listing) if entry.endswith(".ipynb") and entry not in names
                )
            finally:
                os.close(listing)
            found = f" (found: {', '.join(others)})" if others else ""
            problems.append(f"no notebook named {name} in the submission{found}")
            continue
        except OSError as error:
            problems.append(f"{name} was not graded: {error.strerror or error}")
            continue
        if problem := notebook_problem(path):
            # nbgrader would stop at this file; without it, it grades the other notebooks
            # and gives this one 0.
            path.unlink()
            problems.append(f"{name} is {problem}" if len(names) > 1 else problem)
        else:
            problems += unmark_unknown_cells(path, SOLUTIONS_DIR / assignment / name)
    if any(dest.glob("*.ipynb")):  # a submission to grade: its secret names its feedback in the exchange
        problems += copy_exchange_secret(folder, dest, root)
    return problems


SECRET_FILE = "submission_secret.txt"  # written by `nbgrader submit`; names the feedback in the exchange
VALID_SECRET = re.compile(r"^[0-9a-f]{16,256}$")


def copy_exchange_secret(folder: Path, dest: Path, root: Path) -> list[str]:
    """Copy the secret ``nbgrader submit`` left in an exchange submission, by which nbgrader releases the
    student's feedback to them alone; a problem for one that is not what nbgrader writes (hex digits)."""
    try:
        secret = read_regular_file(folder, SECRET_FILE, 1024, root=root).decode("ascii").strip()
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError):
        secret = ""
    if not VALID_SECRET.fullmatch(secret):
        return [
            f"its {SECRET_FILE} is not one nbgrader wrote: its feedback cannot be released through the exchange"
        ]
    (dest / SECRET_FILE).write_text(secret)
    return []


def unmark_unknown_cells(path: Path, source: Path) -> list[str]:
    """Strip nbgrader's metadata from cells the assignment does not have (e.g. a test cell the
    student added), which nbgrader would refuse the whole notebook for; they run as ordinary cells."""
    known = {
        cell.metadata["nbgrader"].get("grade_id")
        for cell in nbformat.read(source, as_version=4).cells
        if "nbgrader" in cell.metadata
    }
    notebook = nbformat.read(path, as_version=4)
    unknown = [
        cell
        for cell in notebook.cells
        if "nbgrader" in cell.metadata and cell.metadata["nbgrader"].get("grade_id") not in known
    ]
    if not unknown:
        return []
    for cell in unknown:
        del cell.metadata["nbgrader"]
    nbformat.write(notebook, path)
    names = ", ".join(sorted({str(cell.id) for cell in unknown}))
    return [f"cells with nbgrader marks the assignment does not have (ids {names}) ran as ordinary cells"]
