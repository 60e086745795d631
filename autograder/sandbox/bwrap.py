"""The bubblewrap command line of a student's kernel, and the kernelspec that starts it (see the
package's docstring for what the sandbox holds)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
#: The kernel the course's notebooks ask for; the private course's kernelspec of that name wins.
KERNEL_NAME = "mlhep"
#: Course packages a notebook may import (bound read-only; the rest of the repository is not).
COURSE_PACKAGES = ("data_fetch", "mlhep")
#: The grader's agent (autograder.kernel), the one part of autograder a kernel runs: it is bound
#: alone, under an empty ``autograder/__init__.py``.
AGENT_PACKAGE = REPO_ROOT / "autograder" / "kernel"
#: System folders bound read-only when they exist (/sys: joblib counts the CPU cores there).
SYSTEM_FOLDERS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc", "/sys")
#: Environment variables passed into the sandbox (everything else is cleared).
PASSED_ENVIRONMENT = ("PATH", "LANG", "LC_ALL", "TZ", "OMP_NUM_THREADS", "TF_CPP_MIN_LOG_LEVEL")
#: matplotlib's configuration folder in the sandbox (in its private /tmp).
SANDBOX_MPLCONFIGDIR = "/tmp/matplotlib"
INSTALL_HINT = (
    "install bubblewrap (Debian/Ubuntu: `apt-get install bubblewrap`; `bash run.sh setup` does it when it can)"
)


def available() -> tuple[bool, str]:
    """Can bubblewrap start a sandbox here? (ok, reason if not)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return False, f"bubblewrap (`bwrap`) is not installed: {INSTALL_HINT}"
    probe = subprocess.run(
        [bwrap, "--ro-bind", "/", "/", "--unshare-all", "--die-with-parent", "true"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if probe.returncode != 0:
        return False, (
            f"bubblewrap cannot create a sandbox on this machine ({probe.stderr.strip()}); "
            "it needs user namespaces or root"
        )
    return True, ""


def data_folder() -> Path:
    from data_fetch import cache

    return Path(cache.cache_root())


#: The kernel's working folder: a RAM disk of its own inside the sandbox, which nothing outside
#: ever reads. The notebook runs there; what it writes vanishes with the sandbox.
SCRATCH_DIR = "/home/student"
#: Sizes of the sandbox's RAM disks (they count against the kernel's memory as well, where a
#: cgroup limits it; the largest file a kernel may write anywhere is limits.MAX_FILE_BYTES).
SCRATCH_BYTES = 512 * 2**20
TMP_BYTES = 512 * 2**20
SHM_BYTES = 64 * 2**20


def read_only_folders(data_dir: Path | None = None) -> list[Path]:
    """The host folders a sandboxed kernel can read (bound read-only): the system, Python, the
    course's packages and the data cache."""
    folders = [Path(folder) for folder in SYSTEM_FOLDERS if Path(folder).exists()]
    folders += sorted({Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve()})
    folders += [REPO_ROOT / package for package in COURSE_PACKAGES] + [AGENT_PACKAGE]
    data_dir = data_folder() if data_dir is None else data_dir
    if data_dir.is_dir():
        folders.append(data_dir.resolve())
    return folders


def visible_folder(path: Path, data_dir: Path | None = None) -> Path | None:
    """The folder bound into the sandbox that holds ``path`` (or lies inside it); None if the
    sandbox cannot see ``path`` at all."""
    path = Path(path).resolve()
    for folder in read_only_folders(data_dir):
        folder = folder.resolve()
        if path == folder or folder in path.parents or path in folder.parents:
            return folder
    return None


def bwrap_command(
    connection_file: Path,
    data_dir: Path | None = None,
    font_cache: Path | None = None,
    empty_file_fd: int | None = None,
) -> list[str]:
    """The bubblewrap command line that runs an IPython kernel for ``connection_file``.

    The kernel works in :data:`SCRATCH_DIR`, a size-limited RAM disk of its own, and binds its
    Unix sockets at the ``ip`` prefix of the connection file: that folder (one per student, made
    by the grader, holding nothing else) is the only host folder it can write. Nothing the grader
    writes or reads back (the course, the submission, the gradebook, the outputs) is in the
    sandbox at all. ``font_cache`` (see :func:`write_font_cache`) is given to matplotlib read-only.
    ``empty_file_fd``: a file descriptor to read an empty file from (a pipe's closed end), which
    becomes ``autograder/__init__.py`` above the agent's package.
    """
    connection_file = connection_file.resolve()
    connection = json.loads(connection_file.read_text())
    if connection.get("transport") != "ipc":
        sys.exit("autograder.sandbox: the kernel must use the ipc transport (KernelManager.transport)")
    socket_dir = Path(connection["ip"]).resolve().parent
    if connection_file.parent == socket_dir:
        sys.exit(
            "autograder.sandbox: the kernel's sockets need a folder of their own, apart from the connection file"
        )
    command = [
        "bwrap",
        "--die-with-parent",
        "--new-session",
        "--unshare-all",
        "--clearenv",
        "--size",
        str(TMP_BYTES),
        "--tmpfs",
        "/tmp",
    ]  # first: the binds below may lie inside /tmp
    data_dir = data_folder() if data_dir is None else data_dir
    for folder in read_only_folders(data_dir):
        command += ["--ro-bind", str(folder), str(folder)]
    if empty_file_fd is not None:  # the agent's package without autograder's own __init__ (the grader's)
        command += ["--file", str(empty_file_fd), str(AGENT_PACKAGE.parent / "__init__.py")]
    command += [
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--size",
        str(SHM_BYTES),
        "--tmpfs",
        "/dev/shm",  # shm: multiprocessing locks
        "--bind",
        str(socket_dir),
        str(socket_dir),
        "--ro-bind",
        str(connection_file),
        str(connection_file),
        "--size",
        str(SCRATCH_BYTES),
        "--tmpfs",
        SCRATCH_DIR,
        "--chdir",
        SCRATCH_DIR,
    ]
    if font_cache is not None and font_cache.is_file():
        command += ["--ro-bind", str(font_cache.resolve()), f"{SANDBOX_MPLCONFIGDIR}/{font_cache.name}"]
    environment = {name: os.environ[name] for name in PASSED_ENVIRONMENT if name in os.environ}
    environment.update(
        HOME="/tmp",
        MPLCONFIGDIR=SANDBOX_MPLCONFIGDIR,
        PYTHONDONTWRITEBYTECODE="1",
        MLHEP_DATA_DIR=str(data_dir.resolve()),
    )
    for name, value in sorted(environment.items()):
        command += ["--setenv", name, value]
    return command + [sys.executable, "-m", "ipykernel_launcher", "-f", str(connection_file)]


def runtime_parent() -> str | None:
    """Where the grader makes each kernel's connection and socket folders: a RAM disk (/dev/shm)
    where there is one, so that what a kernel writes in its socket folder fills memory (its own,
    under a memory cgroup) rather than a disk; else the system's temporary folder."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK) else None


def write_font_cache(folder: Path) -> Path | None:
    """Matplotlib's font list as a sandboxed kernel would build it, written to ``folder``.

    A kernel's matplotlib starts with an empty ``/tmp``, so without this file each one would
    search the system's fonts again (about 0.4 s of CPU per student). Built by a matplotlib with
    the sandbox's ``HOME`` (empty, so the same fonts), once per grading; the file name carries
    matplotlib's version. None, with a warning, if it cannot be built: kernels then build their own.
    """
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mlhep-home-") as home:
        environment = {**os.environ, "HOME": home, "MPLCONFIGDIR": str(folder)}
        built = subprocess.run(
            [sys.executable, "-c", "import matplotlib.font_manager"],
            env=environment,
            capture_output=True,
            text=True,
            timeout=300,
        )
    caches = sorted(folder.glob("fontlist-*.json"))
    if built.returncode != 0 or not caches:
        warnings.warn(
            f"matplotlib's font list could not be prepared ({built.stderr.strip()[-300:]}); "
            "each kernel builds its own",
            stacklevel=2,
        )
        return None
    return caches[-1]


def write_kernelspec(kernels_dir: Path) -> Path:
    """A kernelspec named like the course's kernel that starts it through this launcher.

    The kernels get the data cache of this process, and matplotlib's font list, which the
    kernelspec's folder holds (:func:`write_font_cache`).
    """
    folder = kernels_dir / KERNEL_NAME
    folder.mkdir(parents=True, exist_ok=True)
    # Found here, once, so that the launcher of each kernel imports next to nothing.
    launcher = [
        sys.executable,
        "-m",
        "autograder.sandbox.launcher",
        "{connection_file}",
        "--data",
        str(data_folder().resolve()),
    ]
    if font_cache := write_font_cache(folder / "matplotlib"):
        launcher += ["--font-cache", str(font_cache)]
    spec = {
        "argv": launcher,
        "display_name": "Python (mlhep course, sandboxed for grading)",
        "language": "python",
        # A signal from outside cannot reach the kernel in its process namespace: ask it instead.
        "interrupt_mode": "message",
    }
    (folder / "kernel.json").write_text(json.dumps(spec, indent=1))
    return folder
