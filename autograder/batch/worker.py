"""A grading worker: ``python -m autograder.batch.worker COURSE_ROOT ASSIGNMENT``.

:func:`autograder.batch.run.grade` starts a few workers (one more than the cores). Each imports
nbgrader once and then autogrades the students it is sent, one at a time, in-process (nbgrader's own
``NbGraderAPI.autograde``, then ``generate_feedback`` for that student), which saves nbgrader's
start-up (seconds) for every student.

It reads one JSON request per line on stdin: ``{"student": ID, "environment": {...},
"kernel_sockets": PREFIX or null, "log": PATH, "result": PATH}``; for each it writes the
captured nbgrader log to ``log`` and then, atomically, ``{"success": bool}`` to ``result``,
which is how the grader knows it is done. The grader stops a worker that takes longer than
the time limit and starts a new one, so a student's notebook can never stall the batch.
"""

from __future__ import annotations

import json
import os
import resource
import sys
from pathlib import Path

from ..course import nbgrader_api

#: Address space a worker may reserve, in bytes (0: no limit), from the grader: set as the soft
#: limit, so that a student who makes the grader's side of a test allocate without bound stops
#: this worker (its student fails) instead of the machine. The kernel launcher raises it again
#: for the kernel, which has limits of its own.
ADDRESS_SPACE_VARIABLE = "MLHEP_WORKER_ADDRESS_SPACE"
#: Process id of the grader that started this worker: the worker dies with it (see die_with_parent).
PARENT_VARIABLE = "MLHEP_GRADER_PID"


def limit_address_space(environment: dict) -> None:
    if limit := int(environment.get(ADDRESS_SPACE_VARIABLE) or 0):
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        soft = limit if hard == resource.RLIM_INFINITY else min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def die_with_parent(environment: dict) -> None:
    """On Linux, be killed when the process that started this worker dies.

    A grader (or a Dask worker) killed outright cannot stop its grading processes; without this, one
    would grade its student to the end for nobody, its kernel (which dies with it, see
    ``bwrap --die-with-parent``) with it. The signal is armed, then the parent checked, so that a parent
    gone in between is noticed too.
    """
    parent = int(environment.get(PARENT_VARIABLE) or 0)
    if not parent or not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        sys.exit("usage: python -m autograder.batch.worker COURSE_ROOT ASSIGNMENT")
    course_root, assignment = Path(argv[0]), argv[1]
    die_with_parent(os.environ)
    limit_address_space(os.environ)

    api, config = nbgrader_api(course_root)
    os.chdir(course_root)
    given = {}
    for line in sys.stdin:
        request = json.loads(line)
        # This student's environment for the kernel (time and memory limits, connection folder).
        for name in set(given) - set(request["environment"]):
            os.environ.pop(name, None)
        os.environ.update(request["environment"])
        given = request["environment"]
        if request.get("kernel_sockets"):
            config.KernelManager.transport = "ipc"
            config.KernelManager.ip = request["kernel_sockets"]
        result = api.autograde(assignment, request["student"], force=True, create=True)
        log = result.get("log", "") + result.get("error", "")
        if result.get("success"):
            # The student's feedback page right away, on this worker (one page takes about a second).
            feedback = api.generate_feedback(assignment, request["student"], force=True)
            log += "\n[feedback]\n" + feedback.get("log", "") + feedback.get("error", "")
        Path(request["log"]).write_text(log, errors="replace")
        done = Path(request["result"])
        partial = done.with_name(done.name + ".partial")
        partial.write_text(json.dumps({"success": bool(result.get("success"))}))
        partial.rename(done)


if __name__ == "__main__":
    main(sys.argv[1:])
