"""The pieces of a TA's evening that need no grading run: rosters, deadlines and late penalties, the
LMS file, the feedback archive, and finalize's moves into place (tests/test_grading_evening.py runs
the whole evening on a class)."""

from __future__ import annotations

import csv
import datetime
import json
import os
import shutil
import time
import zipfile

import pytest

from autograder.batch import late
from autograder.batch.finalize import (
    ARCHIVE_FILE,
    LMS_FILE,
    STAGING_PREFIX,
    SWAP_MARKER,
    exclusive,
    lms_rows,
    move_into_place,
    read_record,
    recover_interrupted,
    write_archive,
)
from autograder.batch.run import prepare_out_dir, spreadsheet_safe
from autograder.batch.submissions import find_students, read_roster
from autograder.course import UsageError


def test_a_deadline_must_name_its_time_zone():
    assert late.parse_deadline("2026-12-01T23:59+01:00") == datetime.datetime(2026, 12, 1, 22, 59)
    assert late.parse_deadline("2026-12-01T22:59Z") == datetime.datetime(2026, 12, 1, 22, 59)
    with pytest.raises(UsageError, match="no time zone"):
        late.parse_deadline("2026-12-01T23:59")
    with pytest.raises(UsageError, match="cannot read the deadline"):
        late.parse_deadline("next friday")


@pytest.mark.parametrize(
    ("policy", "score", "seconds_late", "taken"),
    [
        ("flag", 10.0, 3600, None),
        ("zero", 10.0, 3600, 10.0),
        ("zero", 10.0, 0, None),
        ("10%/day", 10.0, 1, 1.0),  # a started day counts whole
        ("10%/day", 10.0, 86400, 1.0),
        ("10%/day", 10.0, 86401, 2.0),
        ("25%/day", 10.0, 10 * 86400, 10.0),  # never more than the score
    ],
)
def test_late_penalty_policies(policy, score, seconds_late, taken):
    assert late.penalty(late.check_policy(policy), score, seconds_late) == pytest.approx(taken)


@pytest.mark.parametrize("policy", ["half", "0%/day", "150%/day", "10%"])
def test_an_unknown_penalty_policy_is_refused(policy):
    with pytest.raises(UsageError):
        late.check_policy(policy)


def test_delays_read_at_a_glance():
    assert late.describe_delay(45) == "45 s"
    assert late.describe_delay(2 * 3600 + 13 * 60 + 5) == "2 h 13 min"
    assert late.describe_delay(3 * 86400 + 2 * 3600) == "3 d 2 h"


def test_rosters_in_nbgraders_format_and_as_plain_lists(tmp_path):
    nbgrader_roster = tmp_path / "roster.csv"
    nbgrader_roster.write_text("id,first_name,last_name,email\nalice,A,L,a@x\nbob,B,M,b@x\n")
    assert read_roster(nbgrader_roster) == ["alice", "bob"]
    plain = tmp_path / "students.txt"
    plain.write_text("alice\n\nbob\n")
    assert read_roster(plain) == ["alice", "bob"]
    for text, message in (
        ("name,email\nalice,a@x\n", "no column named"),
        ("id\nalice\nalice\n", "more than once"),
        ("id\n../etc\n", "cannot name a student folder"),
        ("", "lists no students"),
    ):
        nbgrader_roster.write_text(text)
        with pytest.raises(UsageError, match=message):
            read_roster(nbgrader_roster)
    with pytest.raises(UsageError, match="cannot read the roster"):
        read_roster(tmp_path / "nowhere.csv")


def test_the_later_of_two_recorded_times_counts(tmp_path):
    (tmp_path / "timestamp.txt").write_text("2026-12-01 10:00:00.000000 UTC")
    time_ = late.submission_time(tmp_path, "2026-12-01 09:00:00.000000 UTC", None, [])
    assert time_.moment == datetime.datetime(2026, 12, 1, 10)
    assert any("disagree" in remark for remark in time_.remarks), time_.remarks


def test_a_backdated_submission_is_flagged(tmp_path):
    """A student can write any time into timestamp.txt, but not set back when the files last changed."""
    (tmp_path / "timestamp.txt").write_text("2020-01-01 00:00:00.000000 UTC")
    notebook = tmp_path / "homework.ipynb"
    notebook.write_text("{}")
    old = time.time() - 10 * 365 * 86400
    os.utime(notebook, (old, old))  # the modification time can be set back; the change time cannot
    deadline = datetime.datetime(2021, 1, 1)
    time_ = late.submission_time(tmp_path, None, deadline, [notebook], from_exchange=True)
    assert time_.moment == datetime.datetime(2020, 1, 1)
    assert any("after the deadline: check" in remark for remark in time_.remarks), time_.remarks
    # On time for real: nothing to flag.
    assert not late.submission_time(
        tmp_path, None, datetime.datetime.now() + datetime.timedelta(days=1), []
    ).remarks


def test_without_a_recorded_time_the_deadline_cannot_be_checked(tmp_path):
    time_ = late.submission_time(tmp_path, None, datetime.datetime(2026, 1, 1), [])
    assert time_.moment is None and "cannot be checked against the deadline" in time_.remarks[0]


def test_lms_rows_give_every_student_a_total_and_each_cell(tmp_path):
    rows = [
        {"student": "alice", "score": 7.5, "max_score": 10.0, "late_penalty": 0.5, "status": "graded"},
        {"student": "bob", "score": 0.0, "max_score": 10.0, "late_penalty": 0.0, "status": "missing"},
    ]
    header, out = lms_rows(rows, {"alice": {"task1": 3.0, "essay": 5.0}}, ["task1", "essay"])
    assert header == ["student_id", "total", "max_total", "task1", "essay", "late_penalty", "status"]
    assert out[0] | {} == {
        "student_id": "alice",
        "total": 7.5,
        "max_total": 10.0,
        "task1": 3.0,
        "essay": 5.0,
        "late_penalty": 0.5,
        "status": "graded",
    }
    assert out[1]["total"] == 0.0 and out[1]["status"] == "no submission" and out[1]["essay"] == 0.0


def test_the_feedback_archive_is_the_same_for_the_same_pages(tmp_path):
    for student in ("bob", "alice"):
        (tmp_path / "feedback" / student).mkdir(parents=True)
        (tmp_path / "feedback" / student / "homework.html").write_text(f"<p>{student}</p>")
    write_archive(tmp_path / "feedback", tmp_path / "one.zip")
    time.sleep(1.1)  # a zip entry's time has a resolution of 2 s: a clock-dependent archive would differ
    os.utime(tmp_path / "feedback" / "bob" / "homework.html")
    write_archive(tmp_path / "feedback", tmp_path / "two.zip")
    assert (tmp_path / "one.zip").read_bytes() == (tmp_path / "two.zip").read_bytes()
    with zipfile.ZipFile(tmp_path / "one.zip") as archive:
        assert archive.namelist() == ["alice/homework.html", "bob/homework.html"]
        assert archive.read("bob/homework.html") == b"<p>bob</p>"


def staged_outputs(out_dir, text: str):
    staging = out_dir / f"{STAGING_PREFIX}test"
    (staging / "feedback" / "alice").mkdir(parents=True)
    (staging / "feedback" / "alice" / "page.html").write_text(text)
    (staging / "nbgrader-feedback").mkdir()
    for name in ("grades.csv", LMS_FILE, ARCHIVE_FILE):
        (staging / name).write_text(text)
    return staging


def marker(out_dir, staging, remove_lms: bool) -> None:
    (out_dir / SWAP_MARKER).write_text(json.dumps({"staging": staging.name, "remove_lms": remove_lms}))


def test_outputs_move_into_place_and_the_previous_ones_go(tmp_path):
    (tmp_path / "nbgrader").mkdir()
    for text in ("first", "second"):
        staging = staged_outputs(tmp_path, text)
        marker(tmp_path, staging, remove_lms=False)
        move_into_place(tmp_path, staging, remove_lms=False)
        shutil.rmtree(staging)
    assert (tmp_path / "grades.csv").read_text() == "second"
    assert (tmp_path / "feedback" / "alice" / "page.html").read_text() == "second"
    assert not (tmp_path / SWAP_MARKER).exists()
    # Nothing left to send to an LMS: a previous lms.csv must not stay to be uploaded by mistake.
    staging = staged_outputs(tmp_path, "third")
    (staging / LMS_FILE).unlink()
    marker(tmp_path, staging, remove_lms=True)
    move_into_place(tmp_path, staging, remove_lms=True)
    assert not (tmp_path / LMS_FILE).exists() and (tmp_path / "grades.csv").read_text() == "third"


def test_moves_stopped_half_way_are_finished_by_the_next_run(tmp_path):
    (tmp_path / "nbgrader").mkdir()
    (tmp_path / "grades.csv").write_text("old")
    staging = staged_outputs(tmp_path, "new")
    (tmp_path / LMS_FILE).write_text("old")
    marker(tmp_path, staging, remove_lms=False)
    os.replace(staging / "grades.csv", tmp_path / "grades.csv")  # the first moves, then the process died
    os.replace(tmp_path / LMS_FILE, staging / "previous-lms")
    os.replace(staging / LMS_FILE, tmp_path / LMS_FILE)
    recover_interrupted(tmp_path)
    assert (tmp_path / "grades.csv").read_text() == "new"
    assert (tmp_path / LMS_FILE).read_text() == "new"
    assert (tmp_path / "feedback" / "alice" / "page.html").read_text() == "new"
    assert not staging.exists() and not (tmp_path / SWAP_MARKER).exists()


def test_finalize_refuses_a_folder_that_is_not_a_grading_output(tmp_path):
    with pytest.raises(UsageError, match="not the output folder of a grading run"):
        read_record(tmp_path)


def test_lms_file_reads_back_as_written(tmp_path):
    from autograder.batch.finalize import write_lms_csv

    rows = [{"student": "alice", "score": 7.5, "max_score": 10.0, "late_penalty": 0.0, "status": "graded"}]
    write_lms_csv(rows, {"alice": {"task1": 7.5}}, ["task1"], tmp_path / LMS_FILE)
    with open(tmp_path / LMS_FILE, newline="") as file:
        assert list(csv.DictReader(file)) == [
            {
                "student_id": "alice",
                "total": "7.5",
                "max_total": "10.0",
                "task1": "7.5",
                "late_penalty": "0.0",
                "status": "graded",
            }
        ]


# ------------------------------------------------------------------ what students can write themselves


def exchange_folder(inbound, name: str):
    folder = inbound / name
    folder.mkdir(parents=True)
    (folder / "00_getting_started.ipynb").write_text("{}")
    return folder


def test_exchange_folders_that_name_no_student_are_skipped_and_reported(tmp_path):
    inbound = tmp_path / "mlhep" / "inbound"
    for student in ("alice", "..", "*", "=HYPERLINK(x)", "bob smith", "-rf"):
        exchange_folder(inbound, f"{student}+00_getting_started+2026-12-01 10:00:00.000000 UTC+r")
    skipped: list[str] = []
    assert list(find_students(tmp_path / "mlhep", "00_getting_started", skipped)) == ["alice"]
    assert len(skipped) == 5 and all("is not a student id" in line for line in skipped), skipped


def test_the_latest_submission_is_chosen_by_its_time_not_its_text(tmp_path):
    """Text comparison would rank "x" after any date: an unreadable time counts as the folder's change time."""
    inbound = tmp_path / "mlhep" / "inbound"
    early = exchange_folder(inbound, "alice+00_getting_started+2020-12-01 09:00:00.000000 UTC+a")
    later = exchange_folder(inbound, "alice+00_getting_started+2020-12-01 11:00:00.000000 UTC+b")
    exchange_folder(inbound, "alice+00_getting_started+x+c")  # changed now, years later
    found = find_students(tmp_path / "mlhep", "00_getting_started")
    assert found["alice"].name.endswith("+c"), found
    (inbound / "alice+00_getting_started+x+c").rename(tmp_path / "gone")
    assert find_students(tmp_path / "mlhep", "00_getting_started")["alice"] == later != early


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a folder to another user needs root")
def test_a_submission_handed_in_under_a_classmates_name_is_skipped(tmp_path):
    """The inbound folder is writable by every student: only its owner says who handed it in."""
    import pwd

    account = next(user for user in pwd.getpwall() if user.pw_uid not in (0, os.getuid()))
    inbound = tmp_path / "mlhep" / "inbound"
    mine = exchange_folder(inbound, f"{account.pw_name}+00_getting_started+2026-12-01 10:00:00.000000 UTC+a")
    os.chown(mine, account.pw_uid, -1)
    impostor = exchange_folder(inbound, f"{account.pw_name}+00_getting_started+2026-12-02 10:00:00.000000 UTC+b")
    os.chown(impostor, 4242, -1)  # a later submission, made by someone else
    skipped: list[str] = []
    found = find_students(tmp_path / "mlhep", "00_getting_started", skipped)
    assert found[account.pw_name] == mine
    assert skipped == [f"{impostor.name!r}: handed in by uid 4242, not by {account.pw_name}"]


@pytest.mark.parametrize(
    "text",
    [
        "2026-12-01 10:00:00 /etc/localtime",
        "2026-12-01 10:00:00 Europe/Zurich",
        "yesterday",
        "2026-13-01 10:00:00",
    ],
)
def test_only_nbgraders_time_format_is_read(text):
    """A general date parser would open a time-zone file named by the student's text."""
    assert late.parse_recorded_time(text) is None


def test_recorded_times_in_nbgraders_format_and_iso():
    assert late.parse_recorded_time("2026-12-01 10:31:02.123456 UTC") == datetime.datetime(
        2026, 12, 1, 10, 31, 2, 123456
    )
    assert late.parse_recorded_time("2026-12-01T11:31:02+01:00") == datetime.datetime(2026, 12, 1, 10, 31, 2)


def test_an_exchange_submission_without_a_readable_time_counts_from_its_files(tmp_path):
    deadline = datetime.datetime(2020, 1, 1)
    time_ = late.submission_time(tmp_path, "whenever", deadline, [], from_exchange=True)
    assert time_.moment is not None and time_.moment > deadline  # the folder was made now: late
    assert any("the time its files last changed counts" in remark for remark in time_.remarks), time_.remarks


def test_csv_cells_that_a_spreadsheet_would_run_are_quoted():
    row = spreadsheet_safe({"student": "alice", "reason": "=HYPERLINK(x)", "comments": "-1 point", "score": -1.0})
    assert row == {"student": "alice", "reason": "'=HYPERLINK(x)", "comments": "'-1 point", "score": -1.0}


def test_grading_afresh_refuses_to_lose_the_scores_given_by_hand(tmp_path):
    import sqlite3

    out = tmp_path / "out"
    (out / "nbgrader").mkdir(parents=True)
    with sqlite3.connect(out / "nbgrader" / "gradebook.db") as db:
        db.execute("CREATE TABLE grade (manual_score FLOAT, extra_credit FLOAT)")
        db.execute("CREATE TABLE comment (manual_comment TEXT)")
        db.execute("INSERT INTO grade VALUES (1.5, NULL)")
        db.execute("INSERT INTO grade VALUES (NULL, 0.5)")  # extra credit alone is a person's work too
        db.execute("INSERT INTO grade VALUES (NULL, NULL)")
    db.close()
    with pytest.raises(UsageError, match="2 scores or comments given by hand.*regrade"):
        prepare_out_dir(out, tmp_path / "submissions")
    assert (out / "nbgrader" / "gradebook.db").exists()
    prepare_out_dir(out, tmp_path / "submissions", force=True)
    assert not (out / "nbgrader").exists()


def test_one_finalize_at_a_time(tmp_path):
    with (
        exclusive(tmp_path),
        pytest.raises(UsageError, match="another finalize or regrade is running"),
        exclusive(tmp_path),
    ):
        pass
    with exclusive(tmp_path):  # free again
        pass


def test_a_gradebook_that_cannot_be_read_is_kept(tmp_path):
    out = tmp_path / "out"
    (out / "nbgrader").mkdir(parents=True)
    (out / "nbgrader" / "gradebook.db").write_text("not a database")
    with pytest.raises(UsageError, match="cannot read the gradebook"):
        prepare_out_dir(out, tmp_path / "submissions")
    assert (out / "nbgrader" / "gradebook.db").exists()


def test_a_trailing_newline_makes_no_student_id(tmp_path):
    """A regular expression's $ also matches before a final newline: ids are matched whole."""
    inbound = tmp_path / "mlhep" / "inbound"
    exchange_folder(inbound, "alice+00_getting_started+2026-12-01 10:00:00.000000 UTC+a")
    exchange_folder(inbound, "alice\n+00_getting_started+2026-12-01 11:00:00.000000 UTC+b")
    skipped: list[str] = []
    assert list(find_students(tmp_path / "mlhep", "00_getting_started", skipped)) == ["alice"]
    assert len(skipped) == 1 and "is not a student id" in skipped[0]
    roster = tmp_path / "roster.txt"
    roster.write_text("id\nalice\n")
    assert read_roster(roster) == ["alice"]


def test_a_late_penalty_needs_a_deadline(tmp_path):
    from autograder.batch.run import GradingRun

    run = GradingRun("00_getting_started", tmp_path, tmp_path / "out", sandboxed=False, late_penalty="10%/day")
    with pytest.raises(UsageError, match="needs the deadline"):
        run.check()


def test_the_table_of_changes_shows_an_automatic_score_under_a_manual_one():
    from autograder.batch.regrade import student_changes
    from autograder.batch.results import StudentResult

    def result(score: float, points: dict) -> StudentResult:
        return StudentResult(score=score, late_penalty=0.0, to_grade_by_hand=0.0, waiting=[], points=points)

    before = result(3.0, {"task1": 0.0, "task2": 3.0})
    after = result(5.0, {"task1": 2.0, "task2": 3.0})
    # task2's test now fails, but a TA had given it 3 by hand: the table says so, the 3 still counts.
    rows = student_changes("alice", before, after, {"task1": 0.0, "task2": 3.0}, {"task1": 2.0, "task2": 0.0})
    assert [(row["cell"], row["before"], row["after"]) for row in rows] == [
        ("task1", "0", "2"),
        ("task2", "3", "3"),
        ("TOTAL", "3", "5"),
    ]
    assert rows[1]["note"] == "automatic score 3 -> 0; the score given by hand counts"
    first = student_changes("bob", None, after, {}, {"task1": 2.0, "task2": 3.0})
    assert first[-1] == {
        "student": "bob",
        "cell": "TOTAL",
        "before": "",
        "after": "5",
        "note": "graded for the first time",
    }
