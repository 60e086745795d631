"""autograder.sandbox: what a student's kernel can and cannot reach while it is graded.

Each test starts the grading kernel exactly as nbgrader does in a grading run (the private
course's kernelspec, Unix-socket transport, a fresh connection folder) and runs hostile code in it.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpec

from autograder import sandbox
from autograder.course import REPO_ROOT

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None,
                                reason="bubblewrap is installed by `bash run.sh setup`")


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    """A grading kernel in a sandbox, working in a scratch copy of a 'submission' folder."""
    spec_dir = sandbox.write_kernelspec(tmp_path_factory.mktemp("jupyter") / "kernels")
    workdir = tmp_path_factory.mktemp("submission")
    (workdir / "notebook.ipynb").write_text("{}")
    runtime = tempfile.mkdtemp(prefix="mlhep-kernel-")
    manager = KernelManager(transport="ipc", ip=f"{runtime}/kernel")
    # The kernelspec written for the private course, read back as nbgrader's KernelManager would.
    manager._kernel_spec = KernelSpec.from_resource_dir(str(spec_dir))
    manager.start_kernel(cwd=str(workdir))
    client = manager.client()
    client.start_channels()
    client.wait_for_ready(timeout=120)
    yield client, workdir
    client.stop_channels()
    manager.shutdown_kernel(now=True)
    shutil.rmtree(runtime, ignore_errors=True)


def run(kernel, code: str) -> str:
    """Execute ``code`` in the kernel; its printed output (errors as 'ERROR Name')."""
    client, _ = kernel
    output = []

    def hook(message):
        content = message["content"]
        if message["msg_type"] == "stream":
            output.append(content["text"])
        elif message["msg_type"] == "error":
            output.append(f"ERROR {content['ename']}")

    client.execute_interactive(code, timeout=60, output_hook=hook)
    return "".join(output).strip()


def test_kernelspec_starts_the_launcher():
    spec = json.loads((sandbox.write_kernelspec(Path(tempfile.mkdtemp())) / "kernel.json").read_text())
    assert spec["argv"][1:] == ["-m", "autograder.kernel_launcher", "{connection_file}"]
    assert spec["interrupt_mode"] == "message", "signals cannot reach a kernel in its own PID namespace"


def test_the_course_packages_and_data_work(kernel):
    assert run(kernel, "import numpy, data_fetch, mlhep; print('ok')") == "ok"
    # Nothing may reach stderr (nbgrader fails a test cell that writes there): multiprocessing
    # locks need /dev/shm, which scikit-learn's classifiers touch.
    code = ("import contextlib, io, sys\n"
            "err = io.StringIO()\n"
            "with contextlib.redirect_stderr(err):\n"
            "    import multiprocessing, numpy as np\n"
            "    from sklearn.ensemble import HistGradientBoostingClassifier\n"
            "    multiprocessing.Lock()\n"
            "    HistGradientBoostingClassifier(max_iter=5).fit(np.random.rand(100, 2), np.arange(100) % 2)\n"
            "print(repr(err.getvalue()))")
    assert run(kernel, code) == "''"


def test_solutions_and_the_rest_of_the_repository_are_invisible(kernel):
    listing = run(kernel, f"import os; print(sorted(os.listdir({str(REPO_ROOT)!r})))")
    assert "solutions" not in listing and "autograder" not in listing and "exercises" not in listing
    assert run(kernel, f"open({str(REPO_ROOT / 'nbgrader_config.py')!r})") == "ERROR FileNotFoundError"


def test_nothing_outside_the_scratch_folder_is_writable(kernel):
    for path in (REPO_ROOT / "mlhep" / "planted.py", Path(sys.prefix) / "planted.pth", Path("/etc/planted")):
        assert run(kernel, f"open({str(path)!r}, 'w')").startswith("ERROR"), path
        assert not path.exists()
    _, workdir = kernel
    assert run(kernel, "open('scratch.txt', 'w').write('x'); print('written')") == "written"
    assert (workdir / "scratch.txt").read_text() == "x"


def test_home_and_tmp_are_private_and_empty(kernel):
    assert run(kernel, "import os; print(os.listdir('/tmp'), os.environ['HOME'])").endswith("/tmp")
    assert run(kernel, "import os; print(len(os.environ.get('SSH_AUTH_SOCK', '')))") == "0"


def test_no_network(kernel):
    code = ("import socket\n"
            "try:\n"
            "    socket.create_connection(('pypi.org', 443), timeout=3); print('reached')\n"
            "except OSError as e:\n"
            "    print('blocked')")
    assert run(kernel, code) == "blocked"
    server = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "8765"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
    from autograder import grade
    from autograder.course import UsageError

    monkeypatch.setattr(sandbox, "available", lambda: (False, "bubblewrap (`bwrap`) is not installed"))
    (tmp_path / "subs" / "alice").mkdir(parents=True)
    with pytest.raises(UsageError, match="--unsafe-no-sandbox"):
        grade("00_getting_started", tmp_path / "subs", tmp_path / "out")
    assert not (tmp_path / "out" / "grades.csv").exists()
