"""When a submission was handed in, the deadline, and the penalty for late work.

The time of a submission is the one nbgrader's exchange records: ``nbgrader submit`` names the
folder ``STUDENT+ASSIGNMENT+TIMESTAMP`` and writes the same time to ``timestamp.txt`` in it;
``nbgrader collect`` keeps ``timestamp.txt`` in a folder-per-student layout. Both are written by
the student's own account, so neither can prove a submission was on time: where the two disagree
the later one counts, and a submission whose files were changed after the deadline while it
claims to be on time is flagged for the TA (a file's change time, unlike its modification time,
cannot be set back by its owner; copying a class to another disk moves it forward, never back).

Lateness is judged by nbgrader itself (``Autograde`` reads ``timestamp.txt``, the gradebook holds
the deadline as the assignment's due date, and ``AssignLatePenalties`` asks the plugin below for
the penalty); ``finalize`` asks the same plugin again once the scores given by hand are in.
"""

from __future__ import annotations

import datetime
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from nbgrader.plugins import LateSubmissionPlugin
from traitlets import Unicode

from ..course import UsageError

#: In the remark of a submission that claims to be on time but changed after the deadline (see the module).
CHANGED_AFTER_DEADLINE = "after the deadline: check when it was handed in"
TIMESTAMP_FILE = "timestamp.txt"  # nbgrader's name, in the exchange and in a collected submission
MAX_TIMESTAMP_BYTES = 200
#: Timestamps within this many seconds of each other agree (nbgrader writes the same time twice).
SAME_TIME = datetime.timedelta(seconds=2)
#: The policies a grader can choose: mark late work only, a fraction per started day, or zero.
POLICY_HELP = "'flag' (mark late work, take nothing), 'zero', or a percentage per started day late, e.g. '10%/day'"
PER_DAY = re.compile(r"^(?P<percent>\d+(\.\d+)?)%/day$")


#: A submission time as nbgrader writes it ("2026-12-01 10:31:02.123456 UTC"), or in ISO form with an offset.
#: Parsed strictly: the text is the student's, and a general parser would look up any time-zone name in
#: it as a file.
RECORDED_TIME = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})[ T](?P<time>\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?)"
    r"\s*(?P<zone>UTC|Z|[+-]\d{2}:?\d{2})?$"
)


def parse_recorded_time(text: str) -> datetime.datetime | None:
    """A recorded submission time as naive UTC (no zone: UTC, nbgrader's default); None if it is not one."""
    match = RECORDED_TIME.fullmatch(text.strip())
    if not match:
        return None
    zone = match["zone"] or "UTC"
    offset = "+00:00" if zone in ("UTC", "Z") else zone
    try:
        moment = datetime.datetime.fromisoformat(f"{match['date']}T{match['time']}{offset}")
    except ValueError:
        return None
    return moment.astimezone(datetime.UTC).replace(tzinfo=None)


def parse_deadline(text: str) -> datetime.datetime:
    """The deadline as nbgrader keeps it (naive UTC); UsageError unless ``text`` names its time zone."""
    try:
        moment = datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace(" UTC", "+00:00"))
    except ValueError:
        raise UsageError(
            f"cannot read the deadline {text!r}: give an ISO date and time with its time zone, "
            "e.g. 2026-12-01T23:59+01:00 or 2026-12-01T22:59Z"
        ) from None
    if moment.tzinfo is None:
        raise UsageError(
            f"the deadline {text!r} has no time zone, so it could mean different moments on different "
            "machines: add it, e.g. 2026-12-01T23:59+01:00 or 2026-12-01T22:59Z"
        )
    return moment.astimezone(datetime.UTC).replace(tzinfo=None)


def check_policy(policy: str) -> str:
    """``policy`` if it is one of POLICY_HELP's, else UsageError."""
    if policy in ("flag", "zero") or PER_DAY.fullmatch(policy):
        if (match := PER_DAY.fullmatch(policy)) and not 0 < float(match["percent"]) <= 100:
            raise UsageError(f"the late penalty per day must be between 0 and 100%, got {policy!r}")
        return policy
    raise UsageError(f"unknown late-penalty policy {policy!r}: use {POLICY_HELP}")


def policy_config(policy: str) -> str:
    """Lines of the private course's nbgrader configuration that apply ``policy``."""
    return (
        '\nc.AssignLatePenalties.plugin_class = "autograder.batch.late.LatePenalty"\n'
        f"c.LatePenalty.policy = {check_policy(policy)!r}\n"
    )


class LatePenalty(LateSubmissionPlugin):
    """nbgrader's late-submission plugin with the course's policies (see POLICY_HELP)."""

    policy = Unicode("flag", help=POLICY_HELP).tag(config=True)

    def late_submission_penalty(self, student_id: str, score: float, total_seconds_late: float) -> float | None:
        return penalty(self.policy, score, total_seconds_late)


def penalty(policy: str, score: float, seconds_late: float) -> float | None:
    """Points taken from ``score`` for work ``seconds_late`` late (None: nothing, the work is only marked)."""
    if seconds_late <= 0 or policy == "flag":
        return None
    if policy == "zero":
        return score
    match = PER_DAY.fullmatch(policy)
    assert match, policy  # checked when the run started
    days = math.ceil(seconds_late / 86400)
    return min(score, score * days * float(match["percent"]) / 100)


def apply_penalty(submission, policy: str) -> None:
    """Set the late penalty of each notebook of an nbgrader ``submission`` from its score now (manual
    points included), as ``AssignLatePenalties`` does at autograde from the automatic ones."""
    seconds_late = submission.total_seconds_late
    for notebook in submission.notebooks:
        taken = penalty(policy, notebook.score, seconds_late)
        notebook.late_submission_penalty = None if taken is None else max(0.0, min(taken, notebook.score))


def describe_delay(seconds: float) -> str:
    """``seconds`` in words a TA reads at a glance: '3 d 2 h', '2 h 13 min', '45 s'."""
    seconds = round(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


@dataclass
class SubmissionTime:
    """When a submission was handed in (naive UTC, None if unknown), and what a TA should know about it."""

    moment: datetime.datetime | None
    remarks: list[str]


def read_small_text(folder: Path, name: str) -> str | None:
    """The text of ``folder/name`` if it is a small regular file (never through a link), else None."""
    from .submissions import read_regular_file

    try:
        return read_regular_file(folder, name, MAX_TIMESTAMP_BYTES).decode("utf-8", errors="replace").strip()
    except OSError:
        return None


def submission_time(
    folder: Path,
    name_timestamp: str | None,
    deadline: datetime.datetime | None,
    notebooks: list[Path],
    from_exchange: bool = False,
) -> SubmissionTime:
    """When the submission in ``folder`` was handed in: the later of its exchange folder's name and its
    ``timestamp.txt`` (for an exchange submission with neither, when its files last changed); remarks when
    they disagree or cannot be read, and for an exchange submission whose files changed after the deadline
    (in a folder of student folders the files' times are those of whoever copied them there)."""
    remarks = []
    claimed = {}
    recorded = (
        ("its exchange folder's name", name_timestamp),
        (TIMESTAMP_FILE, read_small_text(folder, TIMESTAMP_FILE)),
    )
    for source, text in recorded:
        if not text:
            continue
        if (moment := parse_recorded_time(text)) is not None:
            claimed[source] = moment
        else:
            remarks.append(f"the submission time in {source} cannot be read ({text[:40]!r})")
    if not claimed and from_exchange:
        # nbgrader's submit always records a time: a submission without one readable was made by hand.
        changed = last_change(folder, notebooks)
        if changed is not None:
            claimed["the time its files last changed"] = changed
            remarks.append("no readable submission time: the time its files last changed counts")
    if not claimed:
        if deadline is not None:
            remarks.append(
                "no submission time recorded (no timestamp.txt): it cannot be checked against the deadline"
            )
        return SubmissionTime(None, remarks)
    moment = max(claimed.values())
    if max(claimed.values()) - min(claimed.values()) > SAME_TIME:
        times = ", ".join(f"{source}: {value:%Y-%m-%d %H:%M:%S} UTC" for source, value in claimed.items())
        remarks.append(f"the submission's recorded times disagree ({times}); the later counts")
    if from_exchange and deadline is not None and moment <= deadline:
        changed = last_change(folder, notebooks)
        if changed is not None and changed > deadline:
            remarks.append(
                f"marked on time, but its files were last changed at {changed:%Y-%m-%d %H:%M:%S} UTC, "
                f"{CHANGED_AFTER_DEADLINE} (copying a class to another disk also changes that time)"
            )
    return SubmissionTime(moment, remarks)


def last_change(folder: Path, notebooks: list[Path]) -> datetime.datetime | None:
    """The latest change time (ctime, naive UTC) of ``folder`` and the ``notebooks`` in it, links not followed."""
    times = []
    for path in (folder, *notebooks):
        try:
            times.append(os.lstat(path).st_ctime)
        except OSError:
            continue
    if not times:
        return None
    return datetime.datetime.fromtimestamp(max(times), datetime.UTC).replace(tzinfo=None)


def format_utc(moment: datetime.datetime | None) -> str:
    """A naive UTC time as nbgrader writes it in ``timestamp.txt`` ('' for None)."""
    return "" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S.%f UTC")
