"""Limits on what one student's kernel uses: cgroups where the machine allows, else rlimits.

The grader enters a :class:`KernelBox` around the grading of one student and gives its
:meth:`~KernelBox.environment` to the process that starts the kernel; the launcher
(:mod:`autograder.sandbox.launcher`) calls :func:`enter_limits` before it becomes bubblewrap.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import secrets
import signal
import sys
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

MiB, GiB = 2**20, 2**30
#: The largest file a kernel may write anywhere: its RAM disks, its socket folder (RLIMIT_FSIZE).
MAX_FILE_BYTES = 512 * MiB
#: Cgroup folders the launcher moves itself into (os.pathsep between them).
CGROUPS_VARIABLE = "MLHEP_KERNEL_CGROUPS"
#: For a limit no cgroup can enforce, the launcher sets an rlimit from these instead.
RLIMIT_ADDRESS_SPACE_VARIABLE = "MLHEP_KERNEL_RLIMIT_ADDRESS_SPACE"
RLIMIT_PROCESSES_VARIABLE = "MLHEP_KERNEL_RLIMIT_PROCESSES"
#: The students' cgroups lie in a folder of this name inside the grader's own cgroup, so that the
#: grader's own limits (a container's, a systemd unit's) still hold for its students.
CGROUP_PARENT = "mlhep-grading"
CONTROLLERS = ("memory", "pids")


def default_max_processes() -> int:
    """Tasks a student's kernel may run: the measured need with a wide margin, more with more CPUs.

    Measured in the sandbox (pids.peak of the kernel's cgroup, bwrap's two processes included):
    the solutions of lessons 01 and 02 (TensorFlow, scikit-learn) peak at 29 tasks on 1 CPU and
    35 on 2, lessons 00 and 03 at 18. TensorFlow, OpenBLAS and OpenMP start threads per CPU,
    so about 23 + 6 per CPU; 512 + 16 per CPU keeps a margin of 2.5 or more on any machine.
    """
    return 512 + 16 * (os.cpu_count() or 1)


@dataclass(frozen=True)
class Limits:
    """What one student's kernel, with everything it starts, may use at once."""

    #: Measured in the sandbox (memory.max_usage_in_bytes of the kernel's cgroup, 1 and 2 CPUs): the
    #: solution of lesson 01 (TensorFlow autoencoder) peaks at 427 MiB, 02 at 305 MiB, 00 and 03 at
    #: 140 and 168 MiB; the kernel's resident size reaches 660 MiB with TensorFlow's libraries.
    memory_bytes: int = 4 * GiB
    #: Tasks: processes and their threads (the pids cgroup and RLIMIT_NPROC count both).
    max_processes: int = field(default_factory=default_max_processes)

    def __str__(self) -> str:
        return f"memory {_bytes_text(self.memory_bytes)} and {self.max_processes} tasks"


def _bytes_text(size: int) -> str:
    return f"{size / GiB:g} GiB" if size >= GiB else f"{size / MiB:g} MiB"


class CgroupUnavailable(Exception):
    """No cgroup for a controller can be made here; the message says why."""


def _own_cgroups(proc_cgroup: str) -> dict[str, str]:
    """Controller ('' for the cgroup v2 hierarchy) -> the path of a process's cgroup in it."""
    paths = {}
    for line in proc_cgroup.splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path
    return paths


def _cgroup_mounts(mountinfo: str) -> list[tuple[Path, str, int, list[str]]]:
    """(mount point, the part of the hierarchy it shows, version, mount options) of each cgroupfs."""
    mounts = []
    for line in mountinfo.splitlines():
        fields = line.split()
        fstype, options = fields[fields.index("-") + 1], fields[fields.index("-") + 3]
        if fstype in ("cgroup", "cgroup2"):
            mount_point = re.sub(r"\\([0-7]{3})", lambda octal: chr(int(octal[1], 8)), fields[4])
            mounts.append((Path(mount_point), fields[3], 2 if fstype == "cgroup2" else 1, options.split(",")))
    return mounts


def cgroup_folder(
    controller: str,
    proc_cgroup: str | None = None,
    mountinfo: str | None = None,
) -> tuple[Path, int]:
    """The folder of this process's own cgroup for ``controller``, and its cgroup version.

    ``proc_cgroup`` and ``mountinfo``: the texts of /proc/self/cgroup and /proc/self/mountinfo
    (read when not given).
    """
    own = _own_cgroups(Path("/proc/self/cgroup").read_text() if proc_cgroup is None else proc_cgroup)
    mountinfo = Path("/proc/self/mountinfo").read_text() if mountinfo is None else mountinfo
    for mount_point, shown, version, options in _cgroup_mounts(mountinfo):
        path = own.get(controller if version == 1 else "")
        if (version == 1 and controller not in options) or path is None:
            continue
        if os.path.commonpath([path, shown]) != shown:
            continue  # this mount shows another part of the hierarchy
        folder = mount_point / os.path.relpath(path, shown)
        if version == 2 and controller not in _read(folder / "cgroup.controllers").split():
            continue
        if folder.is_dir():
            return folder, version
    raise CgroupUnavailable(f"no cgroup with the {controller} controller is mounted here")


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _counter(path: Path, name: str) -> int:
    """A counter of a cgroup's events file (``name value`` lines); 0 where there is none."""
    for line in _read(path).splitlines():
        if line.split()[:1] == [name]:
            return int(line.split()[1])
    return 0


def _write_if_present(folder: Path, name: str, value: object) -> bool:
    """Write a cgroup setting; False if this kernel has no such file (e.g. no swap accounting)."""
    if not (folder / name).exists():
        return False
    (folder / name).write_text(str(value))
    return True


def _enable_controller(folder: Path, controller: str) -> None:
    """cgroup v2: let the subgroups of ``folder`` use ``controller`` (they cannot otherwise)."""
    if controller not in _read(folder / "cgroup.subtree_control").split():
        # Refused (EBUSY) while processes run in `folder` itself, unless it is the root.
        (folder / "cgroup.subtree_control").write_text(f"+{controller}")


class KernelBox:
    """Limits on the memory and processes of one student's kernels, and the end of all they start.

    Enter it around the grading of one student, give :meth:`environment` to the process that
    starts the kernels (nbgrader), and leave it when that process has finished::

        with KernelBox(student) as box:
            run nbgrader with {**os.environ, **box.environment()}
            why = box.limits_reached()  # e.g. a kernel killed for its memory: nbclient's "Kernel died"

    Leaving kills every process still in the student's cgroups and removes them.
    """

    def __init__(self, student: str, limits: Limits | None = None):
        self.student = student
        self.limits = Limits() if limits is None else limits
        self.cgroups: dict[str, Path] = {}  # controller -> the student's cgroup for it
        self.versions: dict[str, int] = {}
        self.unavailable: dict[str, str] = {}  # controller -> why no cgroup enforces it

    def __enter__(self) -> KernelBox:
        name = f"{re.sub(r'[^A-Za-z0-9_.-]', '_', self.student)[:64]}-{os.getpid()}-{secrets.token_hex(4)}"
        for controller in CONTROLLERS:
            try:
                base, version = cgroup_folder(controller)
            except (CgroupUnavailable, OSError) as error:
                self.unavailable[controller] = str(error)
                continue
            try:
                self.cgroups[controller] = self._make_cgroup(base, version, controller, name)
                self.versions[controller] = version
            except OSError as error:  # not root, a read-only cgroupfs, v2 without delegation
                self.unavailable[controller] = f"no {controller} cgroup can be made in {base}: {error.strerror}"
        return self

    def _make_cgroup(self, base: Path, version: int, controller: str, name: str) -> Path:
        parent, group = base / CGROUP_PARENT, base / CGROUP_PARENT / name
        if version == 2:
            _enable_controller(base, controller)
            parent.mkdir(exist_ok=True)
            _enable_controller(parent, controller)
        group.mkdir(parents=True, exist_ok=version == 2)  # v2: memory and pids share one folder
        try:
            if controller == "pids":
                (group / "pids.max").write_text(str(self.limits.max_processes))
            elif version == 1:
                (group / "memory.limit_in_bytes").write_text(str(self.limits.memory_bytes))
                # Memory plus swap, where swap is accounted: without it the kernel would swap on.
                _write_if_present(group, "memory.memsw.limit_in_bytes", self.limits.memory_bytes)
            else:
                (group / "memory.max").write_text(str(self.limits.memory_bytes))
                _write_if_present(group, "memory.swap.max", 0)
                # An out-of-memory kill takes the whole kernel, not one of its helper processes.
                _write_if_present(group, "memory.oom.group", 1)
        except OSError:
            if group not in self.cgroups.values():  # v2: memory's cgroup stays
                group.rmdir()
            raise
        return group

    def environment(self) -> dict[str, str]:
        """Variables for the environment of the process that starts this student's kernels."""
        environment = {CGROUPS_VARIABLE: os.pathsep.join(sorted({str(g) for g in self.cgroups.values()}))}
        if "memory" not in self.cgroups:
            environment[RLIMIT_ADDRESS_SPACE_VARIABLE] = str(address_space_limit(self.limits))
        if "pids" not in self.cgroups:
            environment[RLIMIT_PROCESSES_VARIABLE] = str(self.limits.max_processes)
        return environment

    def describe(self) -> str:
        """How the limits are enforced, in a line for the person running the grader."""
        if not self.unavailable:
            versions = " and v".join(str(version) for version in sorted(set(self.versions.values())))
            return f"{self.limits} per student (cgroup v{versions})"
        parts = []
        if "memory" in self.cgroups:
            parts.append(
                f"memory {_bytes_text(self.limits.memory_bytes)} per student (cgroup v{self.versions['memory']})"
            )
        else:
            parts.append(
                f"memory: {_bytes_text(address_space_limit(self.limits))} of address space per "
                f"process (setrlimit RLIMIT_AS, as {self.unavailable['memory']})"
            )
        if "pids" in self.cgroups:
            parts.append(f"{self.limits.max_processes} tasks per student (cgroup v{self.versions['pids']})")
        elif os.geteuid() == 0:
            parts.append(
                f"no limit on processes (RLIMIT_NPROC does not hold for root, and {self.unavailable['pids']})"
            )
        else:
            parts.append(
                f"{self.limits.max_processes} tasks more than the user runs already (setrlimit "
                f"RLIMIT_NPROC, which counts all the user's processes, as {self.unavailable['pids']})"
            )
        if not self.cgroups:
            parts.append("what a kernel leaves running ends with its PID namespace")
        return "; ".join(parts)

    def limits_reached(self) -> list[str]:
        """What the student's kernels ran into so far, in plain words (read it before leaving the box)."""
        reached = []
        if "memory" in self.cgroups:
            events = "memory.oom_control" if self.versions["memory"] == 1 else "memory.events"
            if kills := _counter(self.cgroups["memory"] / events, "oom_kill"):
                reached.append(
                    f"more than {_bytes_text(self.limits.memory_bytes)} of memory "
                    f"(killed {kills} time{'s' * (kills > 1)})"
                )
        if "pids" in self.cgroups and (refused := _counter(self.cgroups["pids"] / "pids.events", "max")):
            reached.append(f"more than {self.limits.max_processes} processes and threads ({refused} refused)")
        return reached

    def processes(self) -> set[int]:
        """Ids (in the grader's view) of the processes in the student's cgroups."""
        pids: set[int] = set()
        for group in set(self.cgroups.values()):
            pids.update(int(pid) for pid in _read(group / "cgroup.procs").split())
        pids.discard(os.getpid())  # the grader is never in there; be sure it is never killed
        return pids

    def kill_all(self, timeout: float = 10) -> bool:
        """Kill every process in the student's cgroups; True when none is left."""
        for group in set(self.cgroups.values()):
            _write_if_present(group, "cgroup.kill", 1)  # cgroup v2, Linux 5.14+: all at once
        # Again and again, for what was forked meanwhile: a killed process forks no more, and
        # pids.max bounds how many there can be, so a fork loop runs out (measured: 54 processes
        # of a fork loop killed in 0.6 s).
        deadline = time.monotonic() + timeout
        while pids := self.processes():
            if time.monotonic() > deadline:
                warnings.warn(
                    f"processes {sorted(pids)} of {self.student}'s kernel survived SIGKILL for {timeout:g} s",
                    stacklevel=2,
                )
                return False
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):  # it has just exited
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.01)
        return True

    def close(self) -> None:
        """Kill what runs in the student's cgroups and remove them (what leaving the box does)."""
        if self.kill_all():
            for group in set(self.cgroups.values()):
                _remove_cgroup(group)
        self.cgroups.clear()

    def __exit__(self, *exc_info) -> None:
        self.close()


def _remove_cgroup(group: Path) -> None:
    """Remove a student's cgroup. Its parent stays (empty): graders working in parallel would
    otherwise race to remove it while another makes a student's cgroup inside it."""
    deadline = time.monotonic() + 5
    while True:
        try:
            group.rmdir()
            break
        except FileNotFoundError:
            break
        except OSError:  # EBUSY for a moment while the last killed processes exit
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def describe_limits(limits: Limits | None = None) -> str:
    """How a KernelBox enforces ``limits`` here, for the grader to print once (makes a cgroup to see)."""
    with KernelBox("probe", limits) as box:
        return box.describe()


#: Address space a kernel reserves without using it, per CPU: glibc gives each thread a malloc
#: arena of 64 MiB (at most 8 per CPU) and a stack of 8 MiB, and TensorFlow, OpenBLAS and OpenMP
#: start threads per CPU. Measured with the solution of lesson 01 (TensorFlow): 2.16 GiB of address
#: space for 0.65 GiB resident on 1 CPU, 2.26 GiB on 2 CPUs (a small training script: 1.46 and
#: 1.81 GiB); 512 MiB is glibc's worst case.
ADDRESS_SPACE_PER_CPU = 512 * MiB


def address_space_limit(limits: Limits) -> int:
    """RLIMIT_AS that stands in for ``limits.memory_bytes`` where no cgroup can.

    RLIMIT_AS counts address space, which is reserved far beyond the memory a kernel touches,
    more so the more CPUs it runs threads for; and it holds per process, not for the kernel
    and its children together.
    """
    return limits.memory_bytes + ADDRESS_SPACE_PER_CPU * (os.cpu_count() or 1)


def tasks_of_user(uid: int) -> int:
    """How many tasks (threads) run under the real user id ``uid``: what RLIMIT_NPROC counts."""
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            status = _read(Path(entry.path) / "status")
            real_uid = re.search(r"^Uid:\s+(\d+)", status, re.MULTILINE)
            threads = re.search(r"^Threads:\s+(\d+)", status, re.MULTILINE)
            if real_uid and threads and int(real_uid[1]) == uid:
                count += int(threads[1])
    return count


def _lower_rlimit(kind: int, value: int) -> None:
    _, hard = resource.getrlimit(kind)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(kind, (value, value))


def enter_limits(environment: Mapping[str, str]) -> None:
    """In the launcher: join the student's cgroups given by the box, or set the rlimits instead.

    The worker that starts the kernel limits its own address space with a soft limit
    (autograder.batch.worker); the kernel gets the hard one back, then its own limits."""
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (hard, hard))
    for folder in filter(None, environment.get(CGROUPS_VARIABLE, "").split(os.pathsep)):
        try:
            (Path(folder) / "cgroup.procs").write_text(str(os.getpid()))
        except OSError as error:  # no kernel rather than one without its limits
            sys.exit(f"autograder.sandbox: cannot join the student's cgroup {folder}: {error}")
    if address_space := environment.get(RLIMIT_ADDRESS_SPACE_VARIABLE):
        _lower_rlimit(resource.RLIMIT_AS, int(address_space))
    # No single file may grow past this, on the RAM disks or in the socket folder.
    _lower_rlimit(resource.RLIMIT_FSIZE, MAX_FILE_BYTES)
    if processes := environment.get(RLIMIT_PROCESSES_VARIABLE):
        # RLIMIT_NPROC counts every task of the user, not only this kernel's: the student gets
        # `processes` more than run now. Linux does not apply it to root.
        _lower_rlimit(resource.RLIMIT_NPROC, tasks_of_user(os.getuid()) + int(processes))
