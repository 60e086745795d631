"""autograder.sandbox: what a student's kernel can and cannot reach while it is graded.

Each test starts the grading kernel exactly as nbgrader does in a grading run (the private
course's kernelspec, Unix-socket transport, a fresh connection folder, the environment of the
student's KernelBox) and runs hostile code in it.
"""

import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from jupyter_client import KernelClient, KernelManager
from jupyter_client.kernelspec import KernelSpec

from autograder import sandbox
from autograder.course import REPO_ROOT

pytestmark = [
    pytest.mark.grading,  # starts kernels in the sandbox
    pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is installed by `bash run.sh setup`"),
]

#: Small limits for the hostile tests. Measured here: an idle kernel runs 14 tasks (bwrap twice,
#: the kernel's threads) in 37 MiB; with numpy imported, 15 tasks.
SMALL = sandbox.Limits(memory_bytes=512 * sandbox.MiB, max_processes=64)


@dataclass
class Kernel:
    manager: KernelManager
    client: KernelClient
    workdir: Path
    box: sandbox.KernelBox


@pytest.fixture(scope="module")
def kernelspec(tmp_path_factory) -> Path:
    return sandbox.write_kernelspec(tmp_path_factory.mktemp("jupyter") / "kernels")


@contextmanager
def boxed_kernel(kernelspec: Path, workdir: Path, limits: sandbox.Limits | None = None):
    """A grading kernel in a sandbox and a KernelBox; the box is left with the kernel still running,
    as when nbgrader is stopped at the notebook's time limit."""
    runtime = tempfile.mkdtemp(prefix="mlhep-kernel-", dir=sandbox.runtime_parent())
    os.mkdir(f"{runtime}/sockets")  # the sockets' folder, apart from the connection file (as grade makes them)
    manager = KernelManager(
        transport="ipc", ip=f"{runtime}/sockets/kernel", connection_file=f"{runtime}/kernel.json"
    )
    # The kernelspec written for the private course, read back as nbgrader's KernelManager would.
    manager._kernel_spec = KernelSpec.from_resource_dir(str(kernelspec))
    try:
        with sandbox.KernelBox("student", limits) as box:
            manager.start_kernel(cwd=str(workdir), env={**os.environ, **box.environment()})
            client = manager.client()
            client.start_channels()
            try:
                client.wait_for_ready(timeout=120)
                yield Kernel(manager, client, workdir, box)
            finally:
                client.stop_channels()
    finally:
        manager.shutdown_kernel(now=True)
        shutil.rmtree(runtime, ignore_errors=True)


@pytest.fixture(scope="module")
def kernel(kernelspec, tmp_path_factory):
    """A grading kernel under the default limits, working in a scratch copy of a 'submission' folder."""
    workdir = tmp_path_factory.mktemp("submission")
    (workdir / "notebook.ipynb").write_text("{}")
    with boxed_kernel(kernelspec, workdir) as started:
        yield started


@pytest.fixture
def small_kernel(kernelspec, tmp_path):
    with boxed_kernel(kernelspec, tmp_path, SMALL) as started:
        yield started


def run(kernel: Kernel, code: str, timeout: float = 60) -> str:
    """Execute ``code`` in the kernel; its printed output (errors as 'ERROR Name'), 'DIED' if it died."""
    request = kernel.client.execute(code)
    output = []
    deadline = time.monotonic() + timeout
    while True:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no answer in {timeout} s to {code!r}")
        try:
            message = kernel.client.get_iopub_msg(timeout=0.1)
        except queue.Empty:
            if not kernel.manager.is_alive():
                return "DIED"
            continue
        if message["parent_header"].get("msg_id") != request:
            continue
        content = message["content"]
        if message["msg_type"] == "stream":
            output.append(content["text"])
        elif message["msg_type"] == "error":
            output.append(f"ERROR {content['ename']}")
        elif message["msg_type"] == "status" and content["execution_state"] == "idle":
            return "".join(output).strip()


def needs_cgroups(kernel: Kernel) -> None:
    if set(kernel.box.cgroups) != set(sandbox.CONTROLLERS):
        pytest.skip(f"no cgroups for the kernel here: {kernel.box.describe()}")


def still_running(pids) -> list[int]:
    """Those of ``pids`` that still run (a killed process waiting for its parent to reap it does not)."""
    running = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                running.append(pid)
        except psutil.NoSuchProcess:
            pass
    return running


def test_kernelspec_starts_the_launcher():
    spec = json.loads((sandbox.write_kernelspec(Path(tempfile.mkdtemp())) / "kernel.json").read_text())
    assert spec["argv"][1:6] == [
        "-m",
        "autograder.sandbox.launcher",
        "{connection_file}",
        "--data",
        str(sandbox.data_folder().resolve()),
    ]
    assert spec["argv"][6] == "--font-cache"
    font_cache = Path(spec["argv"][7])
    assert font_cache.name.startswith("fontlist-") and json.loads(font_cache.read_text())["ttflist"]
    assert spec["interrupt_mode"] == "message", "signals cannot reach a kernel in its own PID namespace"


def test_matplotlib_uses_the_prepared_font_list(kernel):
    # Without it, every student's kernel would search the system's fonts again (about 0.4 s).
    code = (
        "import logging, io\n"
        "log = io.StringIO()\n"
        "logging.getLogger('matplotlib.font_manager').addHandler(logging.StreamHandler(log))\n"
        "logging.getLogger('matplotlib.font_manager').setLevel(logging.INFO)\n"
        "import matplotlib, matplotlib.font_manager as fm\n"
        "fm.findfont('DejaVu Sans')\n"
        "rebuilt = 'generated new fontManager' in log.getvalue()\n"
        "print('rebuilt' if rebuilt else 'cached', matplotlib.get_cachedir())"
    )
    assert run(kernel, code) == f"cached {sandbox.SANDBOX_MPLCONFIGDIR}"


def test_the_course_packages_and_data_work(kernel):
    assert run(kernel, "import numpy, data_fetch, mlhep; print('ok')") == "ok"
    # Nothing may reach stderr (nbgrader fails a test cell that writes there): multiprocessing
    # locks need /dev/shm, which scikit-learn's classifiers touch.
    code = (
        "import contextlib, io, sys\n"
        "err = io.StringIO()\n"
        "with contextlib.redirect_stderr(err):\n"
        "    import multiprocessing, numpy as np\n"
        "    from sklearn.ensemble import HistGradientBoostingClassifier\n"
        "    multiprocessing.Lock()\n"
        "    HistGradientBoostingClassifier(max_iter=5).fit(np.random.rand(100, 2), np.arange(100) % 2)\n"
        "print(repr(err.getvalue()))"
    )
    assert run(kernel, code) == "''"


def test_solutions_and_the_rest_of_the_repository_are_invisible(kernel):
    visible = set(json.loads(run(kernel, f"import json, os; print(json.dumps(os.listdir({str(REPO_ROOT)!r})))")))
    python_env = Path(sys.prefix).resolve()
    allowed = {"data_fetch", "mlhep", "autograder"}
    if REPO_ROOT in python_env.parents:  # a virtual environment in the repository, e.g. .venv
        allowed.add(python_env.relative_to(REPO_ROOT).parts[0])
    assert visible <= allowed and not {"solutions", "exercises"} & visible, visible
    assert run(kernel, f"open({str(REPO_ROOT / 'nbgrader_config.py')!r})") == "ERROR FileNotFoundError"


def test_of_the_grader_only_its_agent_is_there(kernel):
    # The agent's package alone, under an empty autograder/__init__.py: none of the grader's code.
    listing = f"import os; print(sorted(os.listdir({str(REPO_ROOT / 'autograder')!r})))"
    assert run(kernel, listing) == "['__init__.py', 'kernel']"
    assert run(kernel, "import autograder.kernel.agent, autograder; print(autograder.__doc__)") == "None"
    for module in (
        "autograder.batch.run",
        "autograder.testcells.execute",
        "autograder.sandbox",
        "autograder.course",
    ):
        assert run(kernel, f"import {module}") == "ERROR ModuleNotFoundError", module


def test_nothing_outside_the_scratch_folder_is_writable(kernel):
    for path in (REPO_ROOT / "mlhep" / "planted.py", Path(sys.prefix) / "planted.pth", Path("/etc/planted")):
        assert run(kernel, f"open({str(path)!r}, 'w')").startswith("ERROR"), path
        assert not path.exists()
    # The kernel works in a RAM disk of its own: not the folder nbgrader started it in, which the
    # grader writes the graded notebook into.
    code = "import os; open('scratch.txt', 'w').write('x'); print(os.getcwd(), sorted(os.listdir('.')))"
    assert run(kernel, code) == f"{sandbox.SCRATCH_DIR} ['scratch.txt']"
    assert sorted(path.name for path in kernel.workdir.iterdir()) == ["notebook.ipynb"]


def test_the_connection_files_folder_is_out_of_reach(kernel):
    connection = Path(kernel.manager.connection_file)
    before = connection.read_text()
    code = (
        "import os, sys\n"
        "connection = sys.argv[sys.argv.index('-f') + 1]\n"
        "for action in (lambda: open(connection, 'a').write('x'), lambda: os.remove(connection),\n"
        "               lambda: os.symlink('/etc/passwd', os.path.dirname(connection) + '/planted')):\n"
        "    try:\n"
        "        action()\n"
        "    except OSError:\n"
        "        pass\n"
        "print('tried')"
    )
    assert run(kernel, code) == "tried"
    # Whatever the kernel saw, the grader's folder holds its connection file and the sockets' folder.
    assert connection.read_text() == before
    assert sorted(path.name for path in connection.parent.iterdir()) == ["kernel.json", "sockets"]


def test_the_ram_disks_have_a_size(kernel):
    # Filling one ends in ENOSPC (or EFBIG at the largest file) within its size, never at a full disk.
    code = (
        "import errno\n"
        "written = 0\n"
        "try:\n"
        "    with open({path!r}, 'wb') as file:\n"
        "        while written < 2 * 2**30:\n"
        "            file.write(bytes(2**24)); written += 2**24\n"
        "except OSError as error:\n"
        "    print(errno.errorcode[error.errno], written // 2**20)\n"
        "finally:\n"
        "    import os; os.remove({path!r})"
    )
    for path, size in (
        (f"{sandbox.SCRATCH_DIR}/fill", sandbox.SCRATCH_BYTES),
        ("/tmp/fill", sandbox.TMP_BYTES),
        ("/dev/shm/fill", sandbox.SHM_BYTES),
    ):
        code_for = code.format(path=path)
        error, megabytes = run(kernel, code_for, timeout=120).split()
        assert error in ("ENOSPC", "EFBIG") and int(megabytes) <= size // 2**20, (path, error, megabytes)


def test_home_and_tmp_are_private_and_empty(kernel):
    assert run(kernel, "import os; print(os.listdir('/tmp'), os.environ['HOME'])").endswith("/tmp")
    assert run(kernel, "import os; print(len(os.environ.get('SSH_AUTH_SOCK', '')))") == "0"


def test_no_network(kernel):
    code = (
        "import socket\n"
        "try:\n"
        "    socket.create_connection(('pypi.org', 443), timeout=3); print('reached')\n"
        "except OSError as e:\n"
        "    print('blocked')"
    )
    assert run(kernel, code) == "blocked"
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "8765"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        code = code.replace("('pypi.org', 443)", "('127.0.0.1', 8765)")
        assert run(kernel, code) == "blocked", "the host's loopback must be out of reach"
    finally:
        server.kill()


def test_the_grader_cannot_be_seen_or_signalled(kernel):
    grader = os.getpid()
    out = run(kernel, "import os; print(os.getppid(), sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))")
    parent, pids = out.split(" ", 1)
    assert parent == "1" and str(grader) not in pids.split(", ")
    assert run(kernel, f"import os, signal; os.kill({grader}, signal.SIGKILL)").startswith("ERROR")
    assert os.getpid() == grader  # still alive


def test_grading_refuses_without_a_sandbox(monkeypatch, tmp_path):
    from autograder.batch.run import grade
    from autograder.course import UsageError

    monkeypatch.setattr(sandbox, "available", lambda: (False, "bubblewrap (`bwrap`) is not installed"))
    (tmp_path / "subs" / "alice").mkdir(parents=True)
    with pytest.raises(UsageError, match="--unsafe-no-sandbox"):
        grade("00_getting_started", tmp_path / "subs", tmp_path / "out")
    assert not (tmp_path / "out" / "grades.csv").exists()


# --- Limits on memory and processes -----------------------------------------------------------


def no_cgroups(controller):
    raise sandbox.CgroupUnavailable(f"no cgroup with the {controller} controller (test)")


def test_cgroups_enforce_the_limits_where_the_machine_allows():
    try:
        writable = all(os.access(sandbox.cgroup_folder(c)[0], os.W_OK) for c in sandbox.CONTROLLERS)
    except sandbox.CgroupUnavailable:
        writable = False
    with sandbox.KernelBox("student") as box:
        if os.geteuid() != 0 or not writable:
            pytest.skip(f"not root or no writable cgroups: {box.describe()}")
        assert set(box.cgroups) == {"memory", "pids"}, box.describe()
        assert "cgroup v" in box.describe() and "RLIMIT" not in box.describe()
        folders = set(box.cgroups.values())
        assert all(folder.parent.name == sandbox.CGROUP_PARENT for folder in folders)
    assert not any(folder.exists() for folder in folders), "leaving the box removes its cgroups"


def test_the_kernel_runs_inside_the_students_cgroups(kernel):
    needs_cgroups(kernel)
    launcher = kernel.manager.provisioner.process.pid  # became bwrap
    assert launcher in kernel.box.processes()
    assert len(kernel.box.processes()) >= 3, "bwrap, bwrap's init in the sandbox, the kernel"


def test_the_kernel_cannot_leave_its_cgroups(kernel):
    needs_cgroups(kernel)
    for folder in set(kernel.box.cgroups.values()):
        graders_cgroup = folder.parent.parent / "cgroup.procs"
        code = f"import os; open({str(graders_cgroup)!r}, 'w').write(str(os.getpid()))"
        assert run(kernel, code) == "ERROR OSError", "/sys is read-only in the sandbox"


def test_a_huge_allocation_fails_in_the_cell_and_filling_memory_kills_the_kernel(small_kernel):
    needs_cgroups(small_kernel)
    # More than the machine has: Linux refuses it at once (unless vm.overcommit_memory is 1).
    if Path("/proc/sys/vm/overcommit_memory").read_text().strip() != "1":
        beyond_the_machine = 2 * (psutil.virtual_memory().total + psutil.swap_memory().total)
        assert run(small_kernel, f"x = bytearray({beyond_the_machine})") == "ERROR MemoryError"
        assert run(small_kernel, "print('alive')") == "alive"
    # Within the machine, beyond the limit: the out-of-memory killer ends the kernel (nbclient:
    # "Kernel died"). Measured here: dead 1.1 s after the start of the loop.
    code = (
        "import numpy as np\n"
        "arrays = []\n"
        "while True:\n"
        "    arrays.append(np.ones(100 * 2**20, dtype=np.uint8))  # ones: the pages are touched"
    )
    assert run(small_kernel, code, timeout=30) == "DIED"
    assert small_kernel.box.limits_reached()[0].startswith("more than 512 MiB of memory (killed")
    peak_file = "memory.max_usage_in_bytes" if small_kernel.box.versions["memory"] == 1 else "memory.peak"
    if (small_kernel.box.cgroups["memory"] / peak_file).exists():
        assert int((small_kernel.box.cgroups["memory"] / peak_file).read_text()) <= SMALL.memory_bytes


def test_a_fork_loop_stops_at_the_task_limit_and_dies_with_the_box(kernelspec, tmp_path):
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    with boxed_kernel(kernelspec, tmp_path, SMALL) as kernel:
        needs_cgroups(kernel)
        run(kernel, f"import subprocess, sys; bomb = subprocess.Popen([sys.executable, '-c', {bomb!r}])")
        deadline = time.monotonic() + 10  # measured: the limit is reached within 0.1 s
        while not kernel.box.limits_reached():
            assert time.monotonic() < deadline, "the fork loop never reached pids.max"
            time.sleep(0.05)
        assert int((kernel.box.cgroups["pids"] / "pids.current").read_text()) <= SMALL.max_processes
        assert run(kernel, "print('alive')") == "alive", "the kernel itself still answers"
        inside = kernel.box.processes()
        assert len(inside) > 20  # the loop did fork
        assert kernel.box.limits_reached()[-1].startswith("more than 64 processes and threads")
        kernel.box.close()  # as the grader leaves the box, the kernel still running
        assert still_running(inside) == []


def test_a_fork_loop_in_the_kernel_itself_ends_in_an_error_or_its_death(kernelspec, tmp_path):
    with boxed_kernel(kernelspec, tmp_path, SMALL) as kernel:
        needs_cgroups(kernel)
        # 10 tasks above what the idle kernel runs: each copy of the kernel formats its own
        # traceback, which takes 1.3 s for 10 copies here and 7 s for 50.
        running = int((kernel.box.cgroups["pids"] / "pids.current").read_text())
        (kernel.box.cgroups["pids"] / "pids.max").write_text(str(running + 10))
        result = run(kernel, "import os\nwhile True:\n    os.fork()", timeout=60)
        assert result.startswith("ERROR BlockingIOError") or result == "DIED", result
        assert int((kernel.box.cgroups["pids"] / "pids.current").read_text()) <= running + 10
        assert "processes and threads" in kernel.box.limits_reached()[-1]
        inside = kernel.box.processes()
        kernel.box.close()
        assert still_running(inside) == []


def test_nothing_the_student_started_survives_the_box(kernelspec, tmp_path):
    marker = f"{1000 + os.getpid() % 1000}.5"  # sleep's argument, to find it among the host's processes
    with boxed_kernel(kernelspec, tmp_path, SMALL) as kernel:
        needs_cgroups(kernel)
        code = f"import subprocess; subprocess.Popen(['sleep', {marker!r}], start_new_session=True); print('ok')"
        assert run(kernel, code) == "ok"
        sleepers = [p.pid for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", marker]]
        assert len(sleepers) == 1
        inside = kernel.box.processes() | {kernel.manager.provisioner.process.pid}
        folders = set(kernel.box.cgroups.values())
        kernel.box.close()  # before the kernel is shut down: the PID namespace would end the sleep too
        assert still_running(sleepers + sorted(inside)) == []
        assert not any(folder.exists() for folder in folders)


def test_a_small_numpy_computation_works_under_the_default_limits(kernel):
    assert sandbox.Limits() == kernel.box.limits
    assert run(kernel, "import numpy as np; print(int((np.arange(10**6) % 7).sum()))") == "2999997"


def test_without_cgroups_the_launcher_sets_rlimits(kernelspec, tmp_path, monkeypatch):
    monkeypatch.setattr(sandbox.limits, "cgroup_folder", no_cgroups)
    with boxed_kernel(kernelspec, tmp_path, SMALL) as kernel:
        assert "RLIMIT_AS" in kernel.box.describe()
        assert ("does not hold for root" in kernel.box.describe()) == (os.geteuid() == 0)
        limits = run(kernel, "print(open('/proc/self/limits').read())")
        address_space = sandbox.address_space_limit(SMALL)
        assert f"Max address space         {address_space}" in limits
        # np.empty reserves address space without touching it: the limit is reached at once.
        code = (
            "import numpy as np\n"
            "arrays = []\n"
            "while True:\n"
            "    arrays.append(np.empty(100 * 2**20, dtype=np.uint8))"
        )
        assert run(kernel, code) == "ERROR MemoryError"
        assert 0 < int(run(kernel, "print(len(arrays))")) * 100 * sandbox.MiB < address_space
        assert run(kernel, "print('alive')") == "alive"


def test_tensorflow_trains_under_the_default_address_space_limit(kernelspec, tmp_path, monkeypatch):
    # RLIMIT_AS counts reserved address space, which TensorFlow has plenty of (2.3 GiB for a
    # trained model here): a limit too tight breaks the lessons only where cgroups are missing.
    monkeypatch.setattr(sandbox.limits, "cgroup_folder", no_cgroups)
    with boxed_kernel(kernelspec, tmp_path) as kernel:
        assert "RLIMIT_AS" in kernel.box.describe()
        code = (
            "import numpy as np, tensorflow as tf\n"
            "x = np.random.rand(2000, 57).astype('float32')\n"
            "model = tf.keras.Sequential([tf.keras.layers.Input((57,)), tf.keras.layers.Dense(16),\n"
            "                             tf.keras.layers.Dense(57)])\n"
            "model.compile('adam', 'mse')\n"
            "model.fit(x, x, epochs=2, batch_size=256, verbose=0)\n"
            "print('trained')"
        )
        assert run(kernel, code, timeout=120).endswith("trained")  # after TensorFlow's notes on stderr


def test_the_launcher_refuses_to_start_a_kernel_outside_its_cgroup(tmp_path):
    with pytest.raises(SystemExit, match="cannot join"):
        sandbox.enter_limits({sandbox.CGROUPS_VARIABLE: str(tmp_path / "no-such-cgroup")})


@pytest.mark.parametrize(
    "mount_root, own_path, expected",
    [
        (
            "/",
            "/user.slice/user-1000.slice/user@1000.service/app.slice/grader.scope",
            "user.slice/user-1000.slice/user@1000.service/app.slice/grader.scope",
        ),
        ("/docker/0a1b", "/docker/0a1b/grader", "grader"),  # a container's cgroup, bind-mounted
    ],
)
def test_the_graders_own_cgroup_v2_is_found(tmp_path, mount_root, own_path, expected):
    mount = tmp_path / "cgroup 2"
    (mount / expected).mkdir(parents=True)
    (mount / expected / "cgroup.controllers").write_text("cpu io memory pids\n")
    escaped = str(mount).replace(" ", "\\040")  # as /proc/self/mountinfo writes a space
    mountinfo = f"35 24 0:30 {mount_root} {escaped} rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate\n"
    assert sandbox.cgroup_folder("pids", f"0::{own_path}\n", mountinfo) == (mount / expected, 2)
    (mount / expected / "cgroup.controllers").write_text("cpu io\n")  # not delegated to the grader
    with pytest.raises(sandbox.CgroupUnavailable):
        sandbox.cgroup_folder("pids", f"0::{own_path}\n", mountinfo)


def test_the_graders_own_cgroup_v1_is_found(tmp_path):
    (tmp_path / "memory" / "session").mkdir(parents=True)
    (tmp_path / "pids").mkdir()
    mountinfo = (
        f"30 24 0:26 / {tmp_path}/memory rw - cgroup cgroup rw,memory\n"
        f"31 24 0:27 / {tmp_path}/pids rw - cgroup cgroup rw,pids\n"
        f"32 24 0:28 / {tmp_path}/unified rw - cgroup2 cgroup2 rw\n"
    )
    proc_cgroup = "8:pids:/\n4:memory:/session\n0::/\n"
    assert sandbox.cgroup_folder("memory", proc_cgroup, mountinfo) == (tmp_path / "memory" / "session", 1)
    assert sandbox.cgroup_folder("pids", proc_cgroup, mountinfo) == (tmp_path / "pids", 1)
