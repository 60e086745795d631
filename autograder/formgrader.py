"""Grade the written answers by hand in nbgrader's formgrader, on the output of ``grade``.

    python -m autograder formgrader OUT_DIR [--port N] [--no-browser]

``grade`` leaves a private nbgrader course in ``OUT_DIR/nbgrader/`` (its gradebook, the
autograded notebooks, the feedback). This starts a Jupyter server on that course with
nbgrader's formgrader (a jupyter_server extension in nbgrader 0.9), prints the address to
open, and runs until Ctrl-C.

The formgrader finds its course through ``c.CourseDirectory.root`` in the
``nbgrader_config.py`` of the server's working folder (and of Jupyter's config folders). The
server therefore runs in a temporary folder whose configuration loads the private course's
(which loads the repository's) and then sets the root to where the course is now, so a moved
output folder still works and the repository's root never applies.

The pages show students' notebooks in a TA's browser, next to an API that changes scores, so
the server carries nothing manual grading does not need: only nbgrader's formgrader extension
(no JupyterLab, notebook, terminals, language servers or nbgrader's student extensions), its own
APIs closed (:class:`FormgraderOnly`: no files, contents, kernels or sessions), bound to
127.0.0.1, and a Content-Security-Policy that forbids scripts from anywhere else
(``autograder.pages``). The notebooks it renders are made inert first (the course's
``HTMLExporter`` configuration, written by ``autograder.batch.private_course``).

Re-grade with ``python -m autograder grade``, not with the formgrader's autograde buttons:
they would run the students' notebooks in this server, whose kernels are closed.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from jupyter_server.auth import Authorizer

from .course import AutograderError, UsageError
from .pages import FORMGRADER_CSP

HOST = "127.0.0.1"  # only this machine; from elsewhere, forward the port (ssh -L)
START_TIMEOUT = 120  # seconds the server may take to answer (its extensions load in a few)
STOP_TIMEOUT = 20  # seconds it may take to stop cleanly before it is killed
LOG_NAME = "formgrader.log"  # the server's log, in OUT_DIR/nbgrader/
FORMGRADER_EXTENSION = "nbgrader.server_extensions.formgrader"

# Loaded by the formgrader from the server's working folder (see the module's docstring).
SERVER_CONFIG_TEMPLATE = '''\
"""nbgrader configuration of a formgrader server, written by autograder.formgrader."""

c = get_config()  # noqa: F821
load_subconfig({course_config!r})  # noqa: F821  (the private grading course's settings)
c.CourseDirectory.root = {course!r}
c.CourseDirectory.db_url = {db_url!r}
'''

# The Jupyter server's own configuration (given with --config): the formgrader and nothing else.
JUPYTER_CONFIG_TEMPLATE = '''\
"""Jupyter server configuration of a formgrader, written by autograder.formgrader."""

c = get_config()  # noqa: F821
# Only the formgrader: no JupyterLab, notebook, terminals, language servers, nor nbgrader's student
# extensions (validate_assignment runs notebooks).
c.ServerApp.jpserver_extensions = {extensions!r}
c.ServerApp.terminals_enabled = False
# The server's own APIs (contents, files, kernels, sessions, terminals, ...) answer 403.
c.ServerApp.authorizer_class = "autograder.formgrader.FormgraderOnly"
c.ServerApp.tornado_settings = {{"headers": {{"Content-Security-Policy": {csp!r}}}}}
# The formgrader renders notebooks with an exporter made from this configuration: nothing a student
# wrote may be active in its pages (autograder.pages).
c.HTMLExporter.sanitize_html = True
c.HTMLExporter.filters = {{"clean_html": "autograder.pages.clean_html"}}
c.HTMLExporter.preprocessors = ["autograder.pages.SanitizeStudentContent"]
'''


class FormgraderOnly(Authorizer):
    """Lets a request through to the server's own APIs only where manual grading needs it.

    The formgrader's pages and API are nbgrader's handlers, which this does not concern. The
    server's own APIs would give whoever runs a script in the grader's browser the course's files
    (the hidden tests, the gradebook), kernels and terminals: only its version and status
    (``api``) and the CSP report endpoint answer.
    """

    ALLOWED_RESOURCES = frozenset({"api", "csp"})

    def is_authorized(self, handler, user, action: str, resource: str) -> bool:
        return resource in self.ALLOWED_RESOURCES


def server_extensions() -> dict[str, bool]:
    """Every Jupyter server extension enabled on this machine switched off, the formgrader on."""
    from jupyter_core.paths import jupyter_config_path
    from jupyter_server.extension.config import ExtensionConfigManager

    enabled = ExtensionConfigManager(read_config_path=jupyter_config_path()).get_jpserver_extensions()
    return {**{name: False for name in enabled}, FORMGRADER_EXTENSION: True}


def find_course(out_dir: str | Path) -> Path:
    """The private nbgrader course in the grading output ``out_dir``; UsageError if there is none."""
    out_dir = Path(out_dir).resolve()
    course = out_dir / "nbgrader"
    if not out_dir.is_dir():
        raise UsageError(f"the folder {out_dir} does not exist")
    missing = [name for name in ("nbgrader_config.py", "gradebook.db") if not (course / name).is_file()]
    if missing:
        raise UsageError(
            f"{out_dir} is not a grading output folder (no {' or '.join(missing)} in "
            f"{course}); make one with `python -m autograder grade ASSIGNMENT SUBMISSIONS_DIR "
            f"--out {out_dir}`"
        )
    return course


def free_port() -> int:
    """A TCP port on HOST that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def check_port(port: int) -> None:
    """UsageError unless ``port`` can be listened on."""
    if not 1 <= port <= 65535:
        raise UsageError(f"the port must be between 1 and 65535, not {port}")
    with socket.socket() as probe:
        try:
            probe.bind((HOST, port))
        except OSError as error:
            raise UsageError(
                f"cannot use port {port} on {HOST}: {error.strerror or error}; "
                "choose another with --port, or leave --port out"
            ) from None


def formgrader_url(port: int, token: str) -> str:
    """The address that opens the formgrader and logs in with ``token``."""
    return f"http://{HOST}:{port}/formgrader?token={token}"


def server_command(course: Path, port: int, open_browser: bool, config: Path) -> list[str]:
    """The Jupyter server's command line (the token comes through the environment, not argv)."""
    command = [
        sys.executable,
        "-m",
        "jupyter_server",
        f"--config={config}",
        f"--ServerApp.root_dir={course}",  # the formgrader refuses a course outside the root
        f"--ServerApp.ip={HOST}",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        "--ServerApp.default_url=/formgrader",
        f"--ServerApp.open_browser={open_browser}",
    ]
    if os.geteuid() == 0:
        command.append("--ServerApp.allow_root=True")  # Jupyter refuses root otherwise (containers, CI)
    return command


def server_environment(course: Path, token: str) -> dict[str, str]:
    """The server's environment: its login token, and the grading kernelspec first on JUPYTER_PATH."""
    env = {**os.environ, "JUPYTER_TOKEN": token}
    if (course / "jupyter" / "kernels").is_dir():  # written by grade when it grades in the sandbox
        env["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(course / "jupyter"), env.get("JUPYTER_PATH")]))
    return env


def serve(out_dir: str | Path, port: int | None = None, open_browser: bool = True) -> None:
    """Run the formgrader on the grading output ``out_dir`` until Ctrl-C (or SIGTERM).

    Raises:
        UsageError: ``out_dir`` is not a grading output folder, or the port cannot be used.
        AutograderError: the server stopped on its own, or did not answer in time.
    """
    course = find_course(out_dir)
    if port is None:
        port = free_port()
    check_port(port)
    token = secrets.token_hex(24)
    log_path = course / LOG_NAME
    # SIGTERM (e.g. from a job scheduler) stops the server as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    with tempfile.TemporaryDirectory(prefix="mlhep-formgrader-") as workdir, open(log_path, "w") as log:
        Path(workdir, "nbgrader_config.py").write_text(
            SERVER_CONFIG_TEMPLATE.format(
                course_config=str(course / "nbgrader_config.py"),
                course=str(course),
                db_url=f"sqlite:///{course / 'gradebook.db'}",
            )
        )
        jupyter_config = Path(workdir, "jupyter_server_config.py")
        jupyter_config.write_text(
            JUPYTER_CONFIG_TEMPLATE.format(extensions=server_extensions(), csp=FORMGRADER_CSP)
        )
        # stdin is not a terminal, so Ctrl-C stops the server at once instead of asking first.
        server = subprocess.Popen(
            server_command(course, port, open_browser, jupyter_config),
            cwd=workdir,
            env=server_environment(course, token),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until_up(server, port, log_path)
            print(
                f"Formgrader on {course}:\n\n    {formgrader_url(port, token)}\n\n"
                "Written answers: Manual Grading > assignment > notebook > a submission.\n"
                f"Server log: {log_path}. Stop with Ctrl-C.",
                flush=True,
            )
            returncode = server.wait()
            raise AutograderError(f"the Jupyter server stopped (exit code {returncode}); see {log_path}")
        except KeyboardInterrupt:
            print("stopping the formgrader", flush=True)
        finally:
            stop(server)


def wait_until_up(server: subprocess.Popen, port: int, log_path: Path) -> None:
    """Return once the server answers on ``port``; AutograderError if it stops or is too slow."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AutograderError(
                f"the Jupyter server did not start (exit code {server.returncode}):\n"
                + "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
            )
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/api", timeout=5):
                return  # /api answers without a token
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    raise AutograderError(f"the Jupyter server did not answer within {START_TIMEOUT} s; see {log_path}")


def stop(server: subprocess.Popen) -> None:
    """Stop the server cleanly (it shuts its kernels down), or kill it after STOP_TIMEOUT s."""
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
