"""A teaching assistant's whole evening, end to end, on lesson 01 (it has a written answer).

Students hand in through nbgrader's exchange with nbgrader's own ``submit``: an honest one (the
reference solution), a partial one (only the written answer), a hostile one (script in the answer and
the outputs), a late one, and one who handed in late but wrote an on-time date into the exchange;
one student on the roster hands in nothing. Then, as a TA would:

1. ``grade`` with the roster, a deadline and a penalty of 10% per started day;
2. ``finalize`` refuses to write the LMS file while written answers wait for a person;
3. the written answers are graded in the formgrader, typed into its pages by headless Chromium;
4. ``finalize --release`` writes grades.csv, lms.csv, the feedback pages and archive, and releases the
   feedback through the exchange, where each student fetches theirs with nbgrader's ``fetch_feedback``;
5. a hidden test turns out too strict: after its fix, one student's regrade request changes that
   task's score only, and keeps the score given by hand.

About 5 minutes on two cores; needs Chromium and the cached test-scale data (MLHEP_DATA_DIR).
"""

from __future__ import annotations

import csv
import datetime
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from conftest import TEST_HELD_OUT_SEED
from test_formgrader import ANSWER, WRITTEN_ANSWER_ID, hostile_exercise, marks
from test_grading import hidden_and_visible_test_lines, read_csv, visible_text

from autograder.batch.run import grade
from autograder.course import EXERCISES_DIR, REPO_ROOT, SOLUTIONS_DIR
from autograder.formgrader import free_port

from browser import dump_dom, enter_manual_grades, needs_chromium

pytestmark = [pytest.mark.grading, needs_chromium]

ASSIGNMENT = "01_autoencoder_anomaly_detection"
NOTEBOOK = f"{ASSIGNMENT}.ipynb"
COURSE_ID = "mlhep"
ON_TIME = ("honest", "partial", "hostile")
LATE = ("late", "backdated")
ROSTER = sorted((*ON_TIME, *LATE, "missing"))
MANUAL = {  # score and comment of the written answer (2 points), entered in the formgrader
    "honest": (2.0, "Right: the reconstruction error only sees what QCD jets also have."),
    "partial": (0.5, "Half a point: say why the autoencoder reconstructs such jets well."),
    "hostile": (0.0, "No answer here."),
    "late": (1.0, "Half right."),
    "backdated": (1.0, "Half right."),
}
FIXED_TASK = "anomaly_score_ignores_padding"  # the test cell whose hidden test is "fixed" (3 points)
SERVER_START_TIMEOUT = 120


def exchange_config(exchange: Path, home: Path, student: str):
    from traitlets.config import Config

    config = Config()
    config.Exchange.root = str(exchange)
    config.Exchange.cache = str(home / ".nbgrader-cache")  # a student's own cache, as in their home
    config.CourseDirectory.course_id = COURSE_ID
    config.CourseDirectory.root = str(home)
    config.CourseDirectory.assignment_id = ASSIGNMENT
    config.CourseDirectory.student_id = student
    return config


def nbgrader_submit(exchange: Path, home: Path, student: str, text: str) -> None:
    """``nbgrader submit`` of the student's notebook, from their home folder."""
    from nbgrader.auth import Authenticator
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.exchange.default import ExchangeSubmit

    (home / ASSIGNMENT).mkdir(parents=True)
    (home / ASSIGNMENT / NOTEBOOK).write_text(text)
    config = exchange_config(exchange, home, student)
    config.ExchangeSubmit.assignment_dir = str(home)
    ExchangeSubmit(
        coursedir=CourseDirectory(config=config), authenticator=Authenticator(config=config), config=config
    ).start()


def nbgrader_fetch_feedback(exchange: Path, home: Path, student: str) -> list[Path]:
    """``nbgrader fetch_feedback`` as the student; the pages it brought."""
    from nbgrader.auth import Authenticator
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.exchange.default import ExchangeFetchFeedback

    config = exchange_config(exchange, home, student)
    config.ExchangeFetchFeedback.assignment_dir = str(home)
    ExchangeFetchFeedback(
        coursedir=CourseDirectory(config=config), authenticator=Authenticator(config=config), config=config
    ).start()
    return sorted((home / ASSIGNMENT / "feedback").rglob("*.html"))


def exercise_with_answer(text: str) -> str:
    notebook = nbformat.read(EXERCISES_DIR / ASSIGNMENT / NOTEBOOK, as_version=4)
    (cell,) = [c for c in notebook.cells if c.metadata.get("nbgrader", {}).get("grade_id") == WRITTEN_ANSWER_ID]
    cell.source = text
    return nbformat.writes(notebook)


def backdate(inbound: Path, student: str, claimed: datetime.datetime) -> None:
    """What a student can do to their own exchange folder: write an earlier time into its name and
    timestamp.txt (both are the student's files)."""
    (folder,) = inbound.glob(f"{student}+*")
    stamp = claimed.strftime("%Y-%m-%d %H:%M:%S.%f UTC")
    (folder / "timestamp.txt").write_text(stamp)
    student_id, assignment, _, random = folder.name.split("+")
    folder.rename(inbound / f"{student_id}+{assignment}+{stamp}+{random}")


def autograder(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "autograder", *args], capture_output=True, text=True, cwd=REPO_ROOT, timeout=600
    )


class Formgrader:
    """``python -m autograder formgrader OUT`` running, as a TA starts it; its printed address."""

    def __init__(self, out_dir: Path, log: Path):
        self.log = log
        with open(log, "w") as stdout:
            self.command = subprocess.Popen(
                [sys.executable, "-m", "autograder", "formgrader", str(out_dir), "--port", str(free_port())]
                + ["--no-browser"],
                cwd=REPO_ROOT,
                stdout=stdout,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def __enter__(self) -> str:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while self.command.poll() is None and time.monotonic() < deadline:
            if url := re.search(r"http://\S+/formgrader\?token=\w+", self.log.read_text()):
                return url.group(0)
            time.sleep(0.5)
        self.__exit__()
        raise AssertionError(f"the formgrader did not print its address:\n{self.log.read_text()}")

    def __exit__(self, *exc) -> None:
        if self.command.poll() is None:
            self.command.send_signal(signal.SIGTERM)
            try:
                self.command.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.command.pid, signal.SIGKILL)
                self.command.wait()


def output_digest(out_dir: Path) -> dict[str, bytes]:
    """The bytes of everything finalize writes."""
    files = {}
    for name in ("grades.csv", "lms.csv", "feedback.zip"):
        files[name] = (out_dir / name).read_bytes()
    for page in sorted((out_dir / "feedback").rglob("*")):
        if page.is_file():
            files[str(page.relative_to(out_dir))] = page.read_bytes()
    return files


@pytest.fixture(scope="module")
def evening(tmp_path_factory):
    """The evening up to the released feedback; what each step left, for the tests to look at."""
    base = tmp_path_factory.mktemp("evening")
    exchange, homes, out_dir = base / "exchange", base / "homes", base / "grading"
    for folder in ("inbound", "feedback"):
        (exchange / COURSE_ID / folder).mkdir(parents=True)
    shutil.copytree(EXERCISES_DIR / ASSIGNMENT, exchange / COURSE_ID / "outbound" / ASSIGNMENT)  # the release
    texts = {
        "honest": (SOLUTIONS_DIR / ASSIGNMENT / NOTEBOOK).read_text(),
        "partial": exercise_with_answer(ANSWER),
        "hostile": hostile_exercise(),
        "late": exercise_with_answer("Late, but " + ANSWER),
        "backdated": exercise_with_answer("Also late, but " + ANSWER),
    }
    for student in ON_TIME:
        nbgrader_submit(exchange, homes / student, student, texts[student])
    deadline = datetime.datetime.now(datetime.UTC)
    time.sleep(1.5)
    for student in LATE:
        nbgrader_submit(exchange, homes / student, student, texts[student])
    backdate(exchange / COURSE_ID / "inbound", "backdated", deadline - datetime.timedelta(minutes=5))
    roster = base / "roster.csv"
    roster.write_text(
        "id,first_name,last_name\n" + "".join(f"{student},{student.title()},X\n" for student in ROSTER)
    )

    rows = grade(
        ASSIGNMENT,
        exchange,
        out_dir,
        held_out_seed=TEST_HELD_OUT_SEED,
        roster=roster,
        deadline=deadline.isoformat(),
        late_penalty="10%/day",
        cell_timeout=120,
        notebook_timeout=400,
    )
    after_grade = {row["student"]: dict(row) for row in rows}
    too_early = autograder("finalize", str(out_dir))
    too_early_rows = read_csv(out_dir / "grades.csv")
    lms_too_early = (out_dir / "lms.csv").exists()

    profile = base / "chromium-profile"
    with Formgrader(out_dir, base / "formgrader.log") as url:
        for student, (score, comment) in MANUAL.items():
            enter_manual_grades(
                url,
                profile,
                ASSIGNMENT,
                ASSIGNMENT,
                student,
                {WRITTEN_ANSWER_ID: score},
                {WRITTEN_ANSWER_ID: comment},
            )
    finalized = autograder("finalize", str(out_dir), "--release")
    first = output_digest(out_dir)
    again = autograder("finalize", str(out_dir), "--release")
    fetched = {student: nbgrader_fetch_feedback(exchange, homes / student, student) for student in MANUAL}
    return {
        "base": base,
        "out": out_dir,
        "exchange": exchange,
        "after_grade": after_grade,
        "too_early": too_early,
        "too_early_rows": too_early_rows,
        "lms_too_early": lms_too_early,
        "finalized": finalized,
        "first": first,
        "again": again,
        "fetched": fetched,
        "profile": profile,
    }


def test_grade_marks_late_and_missing_students(evening):
    rows = evening["after_grade"]
    assert sorted(rows) == ROSTER
    assert rows["missing"]["status"] == "missing" and rows["missing"]["reason"] == "no submission"
    assert rows["missing"]["score"] == 0.0
    for student in ON_TIME:
        assert rows[student]["status"] == "graded" and not rows[student]["late_by"], rows[student]
    assert rows["late"]["late_by"], rows["late"]
    # The backdated submission claims to be on time; its files say otherwise, and the TA is told.
    assert not rows["backdated"]["late_by"]
    assert "after the deadline: check when it was handed in" in rows["backdated"]["reason"], rows["backdated"]


def test_finalize_waits_for_the_written_answers(evening):
    result = evening["too_early"]
    assert result.returncode == 1, result
    assert "NOT FINISHED" in result.stdout and "Traceback" not in result.stderr, result
    assert not evening["lms_too_early"]
    for student in MANUAL:
        assert f"to grade by hand: {WRITTEN_ANSWER_ID}" in evening["too_early_rows"][student]["reason"]


def test_grades_hold_automatic_and_manual_points_less_the_penalty(evening):
    assert evening["finalized"].returncode == 0, evening["finalized"]
    rows = read_csv(evening["out"] / "grades.csv")
    auto = {student: float(row["score"]) for student, row in evening["after_grade"].items()}
    for student, (manual, comment) in MANUAL.items():
        row = rows[student]
        assert float(row["to_grade_by_hand"]) == 0 and "to grade by hand" not in row["reason"], row
        assert f"{WRITTEN_ANSWER_ID}: {comment}" == row["comments"], row
        expected = (auto[student] + manual) * (0.9 if student == "late" else 1.0)  # one started day: 10%
        assert float(row["score"]) == pytest.approx(expected), (student, row)
    assert float(rows["late"]["late_penalty"]) == pytest.approx(0.1 * (auto["late"] + 1.0))
    assert float(rows["honest"]["score"]) == float(rows["honest"]["max_score"])  # the reference
    # The hostile notebook's script won it nothing: it scores like the partial one, less its answer.
    assert float(rows["hostile"]["score"]) <= float(rows["partial"]["score"])
    assert rows["missing"]["status"] == "missing" and float(rows["missing"]["score"]) == 0


def test_the_lms_file_matches_grades_csv(evening):
    rows = read_csv(evening["out"] / "grades.csv")
    with open(evening["out"] / "lms.csv", newline="") as file:
        lms = {row["student_id"]: row for row in csv.DictReader(file)}
    assert sorted(lms) == ROSTER
    for student, row in lms.items():
        assert float(row["total"]) == pytest.approx(float(rows[student]["score"]))
    for student, (manual, _) in MANUAL.items():
        assert float(lms[student][WRITTEN_ANSWER_ID]) == manual
    assert lms["missing"]["status"] == "no submission" and float(lms["missing"]["total"]) == 0


def test_finalize_tells_the_ta_what_to_check(evening):
    out = evening["finalized"].stdout
    assert "CHECK: 1 submissions marked on time changed after the deadline (backdated)" in out, out
    assert "NOT FINISHED" not in out and "INCOMPLETE" not in out, out


def test_finalize_twice_gives_the_same_files(evening):
    assert evening["again"].returncode == 0, evening["again"]
    assert output_digest(evening["out"]) == evening["first"]


def test_feedback_shows_the_manual_grading_and_no_hidden_test(evening):
    hidden, _ = hidden_and_visible_test_lines(SOLUTIONS_DIR / ASSIGNMENT / NOTEBOOK)
    assert hidden  # the check below would pass vacuously otherwise
    for student, (_, comment) in MANUAL.items():
        (page,) = (evening["out"] / "feedback" / student).glob("*.html")
        text = visible_text(page)
        assert comment in text, student
        leaked = [line for line in hidden if line in text]
        assert not leaked, (student, leaked[:3])
    import zipfile

    with zipfile.ZipFile(evening["out"] / "feedback.zip") as archive:
        assert sorted(archive.namelist()) == sorted(f"{student}/{ASSIGNMENT}.html" for student in MANUAL)


def test_students_fetch_their_own_feedback_through_the_exchange(evening):
    assert "Released the feedback of 5 students" in evening["finalized"].stdout, evening["finalized"].stdout
    for student, pages in evening["fetched"].items():
        assert len(pages) == 1, (student, pages)
        assert pages[0].read_bytes() == (evening["out"] / "feedback" / student / f"{ASSIGNMENT}.html").read_bytes()
    assert "missing" not in evening["fetched"]


def test_no_script_runs_in_the_released_feedback(evening):
    (page,) = evening["fetched"]["hostile"]
    dom = dump_dom(page.as_uri(), evening["profile"])
    assert ANSWER in dom and not marks(dom), marks(dom)


def test_a_regrade_after_a_fixed_test_keeps_the_manual_scores(evening, monkeypatch, tmp_path):
    """The fixed hidden test gives its points to everyone; the student who asked gets them, and the rest
    of their result stays, the score given by hand included."""
    import autograder.batch.held_out
    import autograder.batch.private_course
    import autograder.batch.run
    import autograder.batch.submissions
    import autograder.course
    from autograder.batch.regrade import regrade

    fixed = tmp_path / "solutions"
    shutil.copytree(SOLUTIONS_DIR / ASSIGNMENT, fixed / ASSIGNMENT)
    notebook = nbformat.read(fixed / ASSIGNMENT / NOTEBOOK, as_version=4)
    (cell,) = [c for c in notebook.cells if c.metadata.get("nbgrader", {}).get("grade_id") == FIXED_TASK]
    points = cell.metadata["nbgrader"]["points"]
    cell.source = f"{float(points)}  # the fixed test: full points"
    nbformat.write(notebook, fixed / ASSIGNMENT / NOTEBOOK)
    for module in (
        autograder.course,
        autograder.batch.run,
        autograder.batch.submissions,
        autograder.batch.private_course,
        autograder.batch.held_out,
    ):
        monkeypatch.setattr(module, "SOLUTIONS_DIR", fixed)

    out_dir = evening["out"]
    before = read_csv(out_dir / "grades.csv")
    changes, finalized = regrade(out_dir, students=["partial"], tasks=[FIXED_TASK])
    after = read_csv(out_dir / "grades.csv")

    was = float(before["partial"]["score"])
    assert {(c["student"], c["cell"]): (float(c["before"]), float(c["after"])) for c in changes} == {
        ("partial", FIXED_TASK): (0.0, points),
        ("partial", "TOTAL"): (was, was + points),
    }, changes
    assert float(after["partial"]["score"]) == pytest.approx(float(before["partial"]["score"]) + points)
    assert after["partial"]["comments"] == before["partial"]["comments"]  # the manual grading stays
    for student in set(ROSTER) - {"partial"}:
        assert after[student] == before[student], student
    (table,) = (out_dir / "regrades").glob("*.csv")
    assert FIXED_TASK in table.read_text()
    assert not finalized.waiting and finalized.lms_written
