"""Run each student's kernel in a bubblewrap sandbox.

nbgrader, the gradebook and the assignment's source (with its hidden tests) stay in the
grader's process; the kernel that executes the student's notebook starts inside
`bubblewrap <https://github.com/containers/bubblewrap>`_ and sees only:

* the system and the Python environment, read-only;
* the course's own packages (``data_fetch``, ``mlhep``), the grader's agent
  (:mod:`autograder.kernel`, and nothing else of ``autograder``) and the data cache, read-only;
* its working folder (:data:`SCRATCH_DIR`), ``/tmp`` and ``/dev/shm``: private RAM disks of a
  bounded size, which vanish with the sandbox and which the grader never reads;
* a folder for its Unix sockets, the only host folder it can write: made per student by the
  grader, holding nothing else, on a RAM disk where the machine has one.

Nothing the grader writes or reads back is there: not the submission nbgrader executes, not the
executed notebook it writes, not the feedback, the gradebook, the held-out samples or the other
students' files. So no file a kernel makes (a symbolic link, a huge file, a FIFO) is ever opened
by trusted code. No file the kernel writes may exceed ``MAX_FILE_BYTES`` (RLIMIT_FSIZE).

It has no network (not even the loopback of the host), its own process namespace (it cannot
see or signal the grader or other students' kernels), no ``solutions/``, no other
submissions, no gradebook, and a cleared environment. The kernel talks to nbgrader through
Unix sockets in its connection folder (jupyter_client's ``ipc`` transport), since a network
namespace has no way back to the host's TCP ports.

The kernel's launcher (:mod:`autograder.sandbox.launcher`): the private course's kernelspec runs
``python -m autograder.sandbox.launcher CONNECTION_FILE --data DIR [--font-cache FILE]``, which
replaces itself with ``bwrap ... python -m ipykernel_launcher -f CONNECTION_FILE``
(:mod:`autograder.sandbox.bwrap` makes that command line).

Memory and processes are limited per student by a :class:`KernelBox`
(:mod:`autograder.sandbox.limits`), which the grader enters around the grading of one student::

    with sandbox.KernelBox(student, sandbox.Limits()) as box:
        run nbgrader with box.environment() added to its environment

The box makes the student's cgroups (memory, and pids, which counts threads too) and passes
them to the launcher through the environment; the launcher moves itself into them before it
becomes ``bwrap``, so the kernel and everything it starts stay inside. Leaving the box kills
whatever is still running there and removes the cgroups. Where no cgroup can be made (not
root and no delegated cgroup v2), the launcher sets rlimits instead, which are weaker:
:meth:`KernelBox.describe` says which mechanism is in force.
"""

from .bwrap import (
    KERNEL_NAME,
    SANDBOX_MPLCONFIGDIR,
    SCRATCH_BYTES,
    SCRATCH_DIR,
    SHM_BYTES,
    TMP_BYTES,
    available,
    bwrap_command,
    data_folder,
    read_only_folders,
    runtime_parent,
    visible_folder,
    write_font_cache,
    write_kernelspec,
)
from .limits import (
    CGROUP_PARENT,
    CGROUPS_VARIABLE,
    CONTROLLERS,
    MAX_FILE_BYTES,
    CgroupUnavailable,
    GiB,
    KernelBox,
    Limits,
    MiB,
    address_space_limit,
    cgroup_folder,
    describe_limits,
    enter_limits,
)

__all__ = [
    "CGROUPS_VARIABLE",
    "CGROUP_PARENT",
    "CONTROLLERS",
    "KERNEL_NAME",
    "MAX_FILE_BYTES",
    "SANDBOX_MPLCONFIGDIR",
    "SCRATCH_BYTES",
    "SCRATCH_DIR",
    "SHM_BYTES",
    "TMP_BYTES",
    "CgroupUnavailable",
    "GiB",
    "KernelBox",
    "Limits",
    "MiB",
    "address_space_limit",
    "available",
    "bwrap_command",
    "cgroup_folder",
    "data_folder",
    "describe_limits",
    "enter_limits",
    "read_only_folders",
    "runtime_parent",
    "visible_folder",
    "write_font_cache",
    "write_kernelspec",
]
