"""The command line: ``python -m autograder COMMAND ...``; ``--help`` lists the commands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .batch import late
from .batch.run import grade
from .course import AutograderError, UsageError
from .release import release


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line, with a sub-command per task."""
    parser = argparse.ArgumentParser(prog="python -m autograder", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    release_cmd = commands.add_parser(
        "release", help="regenerate exercises/ from solutions/ (nbgrader generate_assignment)"
    )
    release_cmd.add_argument(
        "assignments", nargs="*", metavar="ASSIGNMENT", help="folders of solutions/ to release (default: all)"
    )
    release_cmd.add_argument(
        "--release-dir", metavar="DIR", help="write the released assignments here instead of exercises/"
    )

    grade_cmd = commands.add_parser("grade", help="autograde a class's submissions of an assignment")
    grade_cmd.add_argument("assignment", metavar="ASSIGNMENT", help="a folder of solutions/")
    grade_cmd.add_argument(
        "submissions_dir", metavar="SUBMISSIONS_DIR", help="one folder per student, named by the student id"
    )
    grade_cmd.add_argument(
        "--out",
        metavar="OUT_DIR",
        help="where grades.csv, feedback/ and logs/ go (default: SUBMISSIONS_DIR-graded)",
    )
    grade_cmd.add_argument(
        "--cell-timeout",
        type=float,
        default=300,
        metavar="S",
        help="seconds a cell may run before it is interrupted (default: 300)",
    )
    grade_cmd.add_argument(
        "--notebook-timeout",
        type=float,
        default=900,
        metavar="S",
        help="seconds one student's grading may take before it is stopped (default: 900)",
    )
    grade_cmd.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="students graded at the same time (default: the cores plus one, as memory allows)",
    )
    grade_cmd.add_argument(
        "--memory-limit",
        type=float,
        default=None,
        metavar="GIB",
        help="memory of each student's kernel, in GiB (default: 4)",
    )
    grade_cmd.add_argument(
        "--held-out-seed",
        type=int,
        default=None,
        metavar="N",
        help="seed of the held-out events the quality tests judge with (default: drawn "
        "at random for this run and recorded in OUT_DIR/held_out.json; give it to "
        "grade again on the same events). Keep it from the students",
    )
    grade_cmd.add_argument(
        "--engine",
        choices=("pool", "dask"),
        default=None,
        help="where students are graded: this machine's pool of grading processes, or tasks of a Dask "
        "LocalCluster of --workers processes (default: pool, or dask when a scheduler is named)",
    )
    grade_cmd.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        default=None,
        help="grade on the workers of this Dask scheduler (e.g. tcp://host:8786; default: "
        "$MLHEP_DASK_SCHEDULER if set); they need this release of the course and bubblewrap",
    )
    grade_cmd.add_argument(
        "--roster",
        metavar="FILE",
        help="the class list (CSV with an `id` column, as nbgrader's, or one id per line): a student on it "
        "who handed nothing in gets a row with 0 and 'no submission'",
    )
    grade_cmd.add_argument(
        "--deadline",
        metavar="TIME",
        help="ISO date and time with its time zone (e.g. 2026-12-01T23:59+01:00): work handed in later "
        "(nbgrader's submission time) is late",
    )
    grade_cmd.add_argument(
        "--late-penalty",
        metavar="POLICY",
        default="flag",
        help=f"what late work loses: {late.POLICY_HELP} (default: flag)",
    )
    grade_cmd.add_argument(
        "--force",
        action="store_true",
        help="grade into an OUT_DIR whose gradebook has scores given by hand, losing them (see `regrade`)",
    )
    grade_cmd.add_argument(
        "--unsafe-no-sandbox",
        action="store_true",
        help="run the notebooks without the bubblewrap sandbox: they can then read the "
        "hidden tests and change the gradebook (only for notebooks you trust)",
    )

    finalize_cmd = commands.add_parser(
        "finalize",
        help="after grading by hand: rewrite grades.csv and the feedback with the manual scores, and write "
        "the exports (lms.csv, feedback.zip)",
    )
    finalize_cmd.add_argument("out_dir", metavar="OUT_DIR", help="the output folder of `grade` (its --out)")
    finalize_cmd.add_argument(
        "--release",
        action="store_true",
        help="also release the feedback through the nbgrader exchange the class was collected from "
        "(students run `nbgrader fetch_feedback`)",
    )
    finalize_cmd.add_argument(
        "--allow-ungraded",
        action="store_true",
        help="write lms.csv (and release) even with answers still to grade by hand; they count 0",
    )

    regrade_cmd = commands.add_parser(
        "regrade",
        help="grade again after a fix to the exercise (or a regrade request), keeping the scores given by "
        "hand; prints what changed, then finalizes",
    )
    regrade_cmd.add_argument("out_dir", metavar="OUT_DIR", help="the output folder of `grade` (its --out)")
    regrade_cmd.add_argument(
        "--student", action="append", metavar="ID", help="only this student (repeat for several; default: all)"
    )
    regrade_cmd.add_argument(
        "--task",
        action="append",
        metavar="CELL",
        help="take the new automatic score of this graded cell only (repeat for several; default: every cell)",
    )
    regrade_cmd.add_argument("--workers", type=int, default=None, metavar="N", help="as for grade")

    distribute_cmd = commands.add_parser(
        "distribute", help="build what students receive: the course without solutions, hidden tests or grader"
    )
    distribute_cmd.add_argument(
        "dest", metavar="DEST", help="a new or empty folder outside the repository (with --archive: the .tar.gz)"
    )
    distribute_cmd.add_argument(
        "--archive", action="store_true", help="write a reproducible DEST.tar.gz instead of a folder"
    )

    formgrader_cmd = commands.add_parser(
        "formgrader", help="grade the written answers by hand in nbgrader's formgrader, on grade's output"
    )
    formgrader_cmd.add_argument("out_dir", metavar="OUT_DIR", help="the output folder of `grade` (its --out)")
    formgrader_cmd.add_argument("--port", type=int, metavar="N", help="port to serve on (default: a free one)")
    formgrader_cmd.add_argument("--no-browser", action="store_true", help="only print the address to open")
    return parser.parse_args(argv)


def limits(args: argparse.Namespace):
    """The sandbox limits asked for on the command line (None: the defaults)."""
    from .sandbox import Limits

    if args.memory_limit is None:
        return None
    if not args.memory_limit > 0:
        raise UsageError(f"--memory-limit must be a positive number of GiB, got {args.memory_limit:g}")
    return Limits(memory_bytes=int(args.memory_limit * 2**30))


def main(argv: list[str] | None = None) -> int:
    """Run the command; plain error messages instead of tracebacks. Returns the exit code."""
    args = parse_args(argv)
    try:
        if args.command == "release":
            for folder in release(args.assignments, args.release_dir):
                print(f"released {folder}")
        elif args.command == "finalize":
            from .batch.finalize import finalize, report

            return report(
                finalize(args.out_dir, release=args.release, allow_ungraded=args.allow_ungraded), args.out_dir
            )
        elif args.command == "regrade":
            from .batch.finalize import report
            from .batch.regrade import regrade

            _, finalized = regrade(args.out_dir, students=args.student, tasks=args.task, workers=args.workers)
            return report(finalized, args.out_dir)
        elif args.command == "distribute":
            from .distribute import build_student_distribution

            print(f"students' distribution: {build_student_distribution(args.dest, archive=args.archive)}")
        elif args.command == "formgrader":
            from .formgrader import serve as serve_formgrader  # imports Jupyter's server: only here

            serve_formgrader(args.out_dir, port=args.port, open_browser=not args.no_browser)
        else:
            submissions = Path(args.submissions_dir).resolve()
            out_dir = args.out or submissions.parent / f"{submissions.name}-graded"
            grade(
                args.assignment,
                args.submissions_dir,
                out_dir,
                cell_timeout=args.cell_timeout,
                notebook_timeout=args.notebook_timeout,
                sandboxed=not args.unsafe_no_sandbox,
                workers=args.workers,
                limits=limits(args),
                held_out_seed=args.held_out_seed,
                engine=args.engine,
                scheduler=args.scheduler,
                roster=args.roster,
                deadline=args.deadline,
                late_penalty=args.late_penalty,
                force=args.force,
            )
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except AutograderError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
