"""A student's result as the gradebook holds it: automatic and manual points, late penalty, comments.

``grade`` reads it right after autograding, ``finalize`` again after the scores given by hand in the
formgrader; both write the same columns of ``grades.csv`` from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nbgrader.api import Gradebook

from . import late


@dataclass
class StudentResult:
    """One student's submission of an assignment, in the gradebook."""

    score: float  # what counts: automatic and manual points, less the late penalty
    late_penalty: float
    to_grade_by_hand: float  # points of cells still waiting for a person (they count 0 in `score`)
    waiting: list[str]  # those cells' ids
    points: dict[str, float | None] = field(default_factory=dict)  # per grade cell (None: waiting)
    comments: list[str] = field(default_factory=list)  # "cell: comment", the ones given by hand
    submitted_at: str = ""
    late_by: str = ""

    def row_values(self) -> dict:
        """The columns of grades.csv this result fills (see autograder.batch.run.COLUMNS)."""
        return {
            "score": round(self.score, 6),
            "to_grade_by_hand": self.to_grade_by_hand,
            "late_penalty": round(self.late_penalty, 6),
            "submitted_at": self.submitted_at,
            "late_by": self.late_by,
            "comments": " | ".join(self.comments),
        }


def student_result(gb: Gradebook, assignment: str, student: str) -> StudentResult:
    """``student``'s result, read from ``gb`` (nbgrader's MissingEntry if they have no submission).

    A cell's points are nbgrader's: the score given by hand where there is one, else the automatic
    one, plus extra credit. The penalty is the one recorded on the notebooks (see :mod:`.late`).
    """
    submission = gb.find_submission(assignment, student)
    points: dict[str, float | None] = {}
    waiting, comments = [], []
    by_hand = 0.0
    for notebook in sorted(submission.notebooks, key=lambda notebook: notebook.name):
        for grade in sorted(notebook.grades, key=lambda grade: grade.name):
            if grade.needs_manual_grade:
                points[grade.name] = None
                waiting.append(grade.name)
                by_hand += grade.max_score
            else:
                points[grade.name] = float(grade.score)
        for comment in sorted(notebook.comments, key=lambda comment: comment.name):
            if comment.manual_comment and comment.manual_comment.strip():
                comments.append(f"{comment.name}: {' '.join(comment.manual_comment.split())}")
    penalty = float(submission.late_submission_penalty or 0.0)
    seconds_late = submission.total_seconds_late
    return StudentResult(
        score=float(submission.score) - penalty,
        late_penalty=penalty,
        to_grade_by_hand=by_hand,
        waiting=waiting,
        points=points,
        comments=comments,
        submitted_at=submission.timestamp.strftime("%Y-%m-%dT%H:%M:%SZ") if submission.timestamp else "",
        late_by=late.describe_delay(seconds_late) if seconds_late > 0 else "",
    )
