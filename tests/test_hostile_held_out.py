"""Hostile submissions of lessons 01-03 (tests/hostile_held_out.py), graded as a TA would.

Each lesson's kinds are graded in one run with a held-out seed drawn at random for that run, as
`python -m autograder grade` does. No attack may earn a point on the test it attacks, none may print
the evidence of having reached the truth, and each run records its seed (which no kernel can read).
About three minutes on two cores, most of it generating the held-out samples of the three runs.
"""

from __future__ import annotations

import json
import re

import pytest
from conftest import graded_outputs
from hostile_held_out import KINDS, LESSONS, write_class
from nbgrader.api import Gradebook

from autograder.batch.held_out import HELD_OUT_RECORD
from autograder.batch.private_course import COURSE_ID
from autograder.batch.run import grade

pytestmark = pytest.mark.grading

CELL_TIMEOUT = 30  # the grader_cpu kind runs into it; the other cells need a few seconds
NOTEBOOK_TIMEOUT = 300


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Lesson -> (rows by student, output folder) of one grading run per lesson."""
    results = {}
    for lesson in LESSONS:
        base = tmp_path_factory.mktemp(lesson)
        write_class(base / "submissions", lesson)
        rows = grade(
            lesson,
            base / "submissions",
            base / "out",
            cell_timeout=CELL_TIMEOUT,
            notebook_timeout=NOTEBOOK_TIMEOUT,
        )
        print(f"\n{lesson}:")
        for row in rows:
            print(f"  {row['student']:22} {row['score']:4g} {row['status']:7} {row['reason']}")
        results[lesson] = ({row["student"]: row for row in rows}, base / "out")
    return results


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.name)
def test_attack_earns_nothing_on_the_test_it_attacks(graded, kind):
    rows, out_dir = graded[kind.lesson]
    row = rows[kind.name]
    assert row["status"] == "graded", row
    with Gradebook(f"sqlite:///{out_dir / 'nbgrader' / 'gradebook.db'}", course_id=COURSE_ID) as gradebook:
        for test in kind.zero_tests:
            cell_grade = gradebook.find_grade(test, kind.lesson, kind.lesson, kind.name)
            assert cell_grade.score == 0, (test, cell_grade.score, row)


@pytest.mark.parametrize("kind", [kind for kind in KINDS if kind.full_tests], ids=lambda kind: kind.name)
def test_grading_goes_on_after_the_attack(graded, kind):
    rows, out_dir = graded[kind.lesson]
    with Gradebook(f"sqlite:///{out_dir / 'nbgrader' / 'gradebook.db'}", course_id=COURSE_ID) as gradebook:
        for test in kind.full_tests:
            cell_grade = gradebook.find_grade(test, kind.lesson, kind.lesson, kind.name)
            assert cell_grade.score == cell_grade.max_score > 0, (test, cell_grade.score, rows[kind.name])


@pytest.mark.parametrize("kind", [kind for kind in KINDS if kind.says], ids=lambda kind: kind.name)
def test_attack_is_told_why(graded, kind):
    rows, out_dir = graded[kind.lesson]
    assert re.search(kind.says, graded_outputs(out_dir, kind.name)), rows[kind.name]


@pytest.mark.parametrize("kind", [kind for kind in KINDS if kind.reason], ids=lambda kind: kind.name)
def test_attack_gets_its_reason(graded, kind):
    row = graded[kind.lesson][0][kind.name]
    assert re.search(kind.reason, row["reason"]), row


@pytest.mark.parametrize("kind", [kind for kind in KINDS if kind.evidence], ids=lambda kind: kind.name)
def test_attack_did_not_get_through(graded, kind):
    rows, out_dir = graded[kind.lesson]
    outputs = graded_outputs(out_dir, kind.name)
    assert "visible tests passed" in outputs  # the outputs can be read at all
    found = re.findall(f".*(?:{kind.evidence}).*", outputs)
    assert not found, found[:3]


def test_each_run_records_a_seed_of_its_own(graded):
    records = [json.loads((out_dir / HELD_OUT_RECORD).read_text()) for _, out_dir in graded.values()]
    assert all(record["samples"] for record in records), records
    seeds = [record["seed"] for record in records]
    assert len(set(seeds)) == len(seeds) and all(seed > 2**32 for seed in seeds), seeds
