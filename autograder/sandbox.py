"""Run each student's kernel in a bubblewrap sandbox.

nbgrader, the gradebook and the assignment's source (with its hidden tests) stay in the
grader's process; the kernel that executes the student's notebook starts inside
`bubblewrap <https://github.com/containers/bubblewrap>`_ and sees only:

* the system and the Python environment, read-only;
* the course's own packages (``data_fetch``, ``mlhep``) and the data cache, read-only;
* this student's copy of the submission (the folder nbgrader executes it in) and the
  kernel's connection folder, writable; ``/tmp`` is a private, empty tmpfs.

It has no network (not even the loopback of the host), its own process namespace (it cannot
see or signal the grader or other students' kernels), no ``solutions/``, no other
submissions, no gradebook, and a cleared environment. The kernel talks to nbgrader through
Unix sockets in its connection folder (jupyter_client's ``ipc`` transport), since a network
namespace has no way back to the host's TCP ports.

This module is also the kernel's launcher: the private course's kernelspec runs
``python -m autograder.kernel_launcher CONNECTION_FILE``, which replaces itself with ``bwrap ...
python -m ipykernel_launcher -f CONNECTION_FILE`` in the folder nbgrader started it in.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
#: The kernel the course's notebooks ask for; the private course's kernelspec of that name wins.
KERNEL_NAME = "mlhep"
#: Course packages a notebook may import (bound read-only; the rest of the repository is not).
COURSE_PACKAGES = ("data_fetch", "mlhep")
#: System folders bound read-only when they exist (/sys: joblib counts the CPU cores there).
SYSTEM_FOLDERS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc", "/sys")
#: Environment variables passed into the sandbox (everything else is cleared).
PASSED_ENVIRONMENT = ("PATH", "LANG", "LC_ALL", "TZ", "OMP_NUM_THREADS", "TF_CPP_MIN_LOG_LEVEL")
INSTALL_HINT = ("install bubblewrap (Debian/Ubuntu: `apt-get install bubblewrap`; `bash run.sh setup` "
                "does it when it can)")


def available() -> tuple[bool, str]:
    """Can bubblewrap start a sandbox here? (ok, reason if not)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return False, f"bubblewrap (`bwrap`) is not installed: {INSTALL_HINT}"
    probe = subprocess.run([bwrap, "--ro-bind", "/", "/", "--unshare-all", "--die-with-parent", "true"],
                           capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        return False, (f"bubblewrap cannot create a sandbox on this machine ({probe.stderr.strip()}); "
                       "it needs user namespaces or root")
    return True, ""


def data_folder() -> Path:
    from data_fetch import cache

    return Path(cache.cache_root())


def bwrap_command(connection_file: Path, workdir: Path, data_dir: Path | None = None) -> list[str]:
    """The bubblewrap command line that runs an IPython kernel for ``connection_file`` in ``workdir``.

    The kernel binds its Unix sockets at the ``ip`` prefix of the connection file; that folder
    (one per student, made by the grader) is the only writable one besides ``workdir``.
    """
    connection_file = connection_file.resolve()
    connection = json.loads(connection_file.read_text())
    if connection.get("transport") != "ipc":
        sys.exit("autograder.sandbox: the kernel must use the ipc transport (KernelManager.transport)")
    socket_dir = Path(connection["ip"]).resolve().parent
    workdir = workdir.resolve()
    command = ["bwrap", "--die-with-parent", "--new-session", "--unshare-all", "--clearenv",
               "--tmpfs", "/tmp"]  # first: the binds below may lie inside /tmp
    for folder in SYSTEM_FOLDERS:
        if Path(folder).exists():
            command += ["--ro-bind", folder, folder]
    python_roots = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve()}
    for root in sorted(python_roots):
        command += ["--ro-bind", str(root), str(root)]
    for package in COURSE_PACKAGES:
        path = REPO_ROOT / package
        command += ["--ro-bind", str(path), str(path)]
    data_dir = data_folder() if data_dir is None else data_dir
    if data_dir.is_dir():
        command += ["--ro-bind", str(data_dir.resolve()), str(data_dir.resolve())]
    command += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/dev/shm",  # shm: multiprocessing locks
                "--ro-bind", str(connection_file), str(connection_file),
                "--bind", str(socket_dir), str(socket_dir),
                "--bind", str(workdir), str(workdir), "--chdir", str(workdir)]
    environment = {name: os.environ[name] for name in PASSED_ENVIRONMENT if name in os.environ}
    environment.update(HOME="/tmp", MPLCONFIGDIR="/tmp/matplotlib", PYTHONDONTWRITEBYTECODE="1",
                       MLHEP_DATA_DIR=str(data_dir.resolve()))
    for name, value in sorted(environment.items()):
        command += ["--setenv", name, value]
    return command + [sys.executable, "-m", "ipykernel_launcher", "-f", str(connection_file)]


def write_kernelspec(kernels_dir: Path) -> Path:
    """A kernelspec named like the course's kernel that starts it through this launcher."""
    folder = kernels_dir / KERNEL_NAME
    folder.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "autograder.kernel_launcher", "{connection_file}"],
        "display_name": "Python (mlhep course, sandboxed for grading)",
        "language": "python",
        # A signal from outside cannot reach the kernel in its process namespace: ask it instead.
        "interrupt_mode": "message",
    }
    (folder / "kernel.json").write_text(json.dumps(spec, indent=1))
    return folder


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.exit("usage: python -m autograder.sandbox CONNECTION_FILE")
    command = bwrap_command(Path(argv[0]), Path.cwd())
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
