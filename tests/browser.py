"""Headless Chromium for the tests that look at pages as a browser does (the formgrader, the feedback
pages, the course website). ``bash run.sh setup`` installs Chromium; without it these tests are skipped.

``dump_dom`` reads a page once. ``Chromium`` drives a browser through the Chrome DevTools Protocol
(over a pipe, so no port and no extra package) for pages a test must type into; ``enter_manual_grades``
uses it to grade in the formgrader as a TA does.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NoReturn

import psutil
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")  # Debian's and Ubuntu's names
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (`bash run.sh setup` installs it)"
)
PAGE_TIMEOUT = 120  # one page takes seconds; leave room for a busy machine
COMMAND_TIMEOUT = 60  # one DevTools command (a script's promise included)
SAVE_TIMEOUT = 60  # from typing a grade to the formgrader having stored it
CLOSE_TIMEOUT = 30

# --no-sandbox: Chromium's own sandbox needs user namespaces, which root and some CI images lack;
# it only ever loads pages the tests serve or write themselves.
HEADLESS_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu")


def assert_no_process_left(profile: Path) -> None:
    """Fails if a Chromium process of the profile ``profile`` is still running (after a short grace)."""
    left = [
        process
        for process in psutil.process_iter(["cmdline"])
        if str(profile) in " ".join(process.info["cmdline"] or [])
    ]
    _, alive = psutil.wait_procs(left, timeout=10)
    assert not alive, f"Chromium processes left running: {alive}"


def dump_dom(url: str, profile: Path, *flags: str) -> str:
    """The page's DOM after its scripts ran (and their requests returned), as Chromium sees it.

    ``profile`` is a fresh user-data folder; ``flags`` are added to Chromium's. Fails if Chromium fails
    or leaves a process of that profile running.
    """
    result = subprocess.run(
        [
            CHROMIUM,
            *HEADLESS_FLAGS,
            f"--user-data-dir={profile}",
            *flags,
            "--virtual-time-budget=15000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=PAGE_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0 and "<body" in result.stdout, (
        f"Chromium failed on {url}:\n{result.stderr[-2000:]}"
    )
    assert_no_process_left(profile)
    return result.stdout


# Chromium reads DevTools commands from its fd 3 and writes replies to its fd 4. The parent's own fds 3
# and 4 belong to others, so a short step in the child moves the pipe ends there before Chromium starts.
EXEC_WITH_DEVTOOLS_PIPES = (
    "import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4); "
    "os.close(int(sys.argv[1])); os.close(int(sys.argv[2])); os.execv(sys.argv[3], sys.argv[3:])"
)
FIRST_FREE_FD = 10  # the pipe ends passed on are moved above 3 and 4, so that moving them clobbers nothing


class Chromium:
    """A headless Chromium driven through the DevTools Protocol; use as a context manager.

    ``profile`` is its user-data folder (cookies persist there); ``flags`` are added to Chromium's.
    Every wait has a timeout, and failures carry the tail of Chromium's stderr.
    """

    def __init__(self, profile: Path, *flags: str) -> None:
        self.profile = profile
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close())
        commands_read, self.commands = os.pipe()
        self.replies, replies_write = os.pipe()
        child_ends = [
            fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, FIRST_FREE_FD) for fd in (commands_read, replies_write)
        ]
        for fd in (commands_read, replies_write):
            os.close(fd)
        try:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-I",
                    "-S",
                    "-c",
                    EXEC_WITH_DEVTOOLS_PIPES,
                    *map(str, child_ends),
                    CHROMIUM,
                    *HEADLESS_FLAGS,
                    f"--user-data-dir={profile}",
                    "--remote-debugging-pipe",
                    *flags,
                    "about:blank",
                ],
                pass_fds=child_ends,
                stdin=subprocess.DEVNULL,
                stdout=self.stderr,
                stderr=self.stderr,
            )
        except BaseException:
            for fd in (self.commands, self.replies):
                os.close(fd)
            self.stderr.close()
            raise
        finally:
            for fd in child_ends:
                os.close(fd)
        self.next_id = 0
        self.unread = b""
        self.events: list[dict[str, Any]] = []

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exception: object) -> None:
        self.close()

    def stderr_tail(self) -> str:
        """The end of Chromium's stderr, less its complaints about the D-Bus that containers lack."""
        self.stderr.seek(0)
        lines = self.stderr.read().decode(errors="replace").splitlines()
        return "\n".join(line for line in lines if ":ERROR:dbus/" not in line)[-3000:]

    def fail(self, message: str) -> NoReturn:
        raise AssertionError(f"{message}\nChromium's stderr ends with:\n{self.stderr_tail()}")

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict[str, Any]:
        """Sends a DevTools command and returns its result (events arriving meanwhile are kept)."""
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        try:
            os.write(self.commands, json.dumps(message).encode() + b"\0")
        except BrokenPipeError:
            self.fail(f"Chromium exited (status {self.process.poll()}) before {method}")
        deadline = time.monotonic() + COMMAND_TIMEOUT
        while True:
            reply = self.receive(deadline, f"the reply to {method}")
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    self.fail(f"{method} failed: {reply['error']}")
                return reply["result"]
            if "method" in reply:
                self.events.append(reply)

    def receive(self, deadline: float, what: str) -> dict[str, Any]:
        """The next message from Chromium, waiting until ``deadline`` at most."""
        while b"\0" not in self.unread:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.fail(f"no {what} from Chromium within the time allowed")
            ready, _, _ = select.select([self.replies], [], [], remaining)
            if ready:
                chunk = os.read(self.replies, 1 << 16)
                if not chunk:
                    self.fail(f"Chromium exited (status {self.process.poll()}) while waiting for {what}")
                self.unread += chunk
        message, self.unread = self.unread.split(b"\0", 1)
        return json.loads(message)

    def wait_for_event(self, method: str, session: str, after: int, timeout: float = PAGE_TIMEOUT) -> None:
        """Waits for the event ``method`` of the page ``session``, among those from index ``after`` on."""
        deadline = time.monotonic() + timeout
        while not any(
            event["method"] == method and event.get("sessionId") == session for event in self.events[after:]
        ):
            message = self.receive(deadline, f"event {method}")
            if "method" in message:
                self.events.append(message)

    def open(self, url: str) -> Page:
        """A new tab showing ``url``, once the page has loaded."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.send("Page.enable", session=session)
        self.send("Runtime.enable", session=session)  # reports the page's uncaught errors, for failures
        page = Page(self, session)
        page.navigate(url)
        return page

    def close(self) -> None:
        """Closes the browser: fails if it does not exit or leaves a process of its profile behind."""
        try:
            if self.process.poll() is None:
                with contextlib.suppress(BrokenPipeError):  # already exiting: the wait says whether it did
                    os.write(self.commands, json.dumps({"id": 0, "method": "Browser.close"}).encode() + b"\0")
                try:
                    self.process.wait(timeout=CLOSE_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
                    self.fail(f"Chromium did not exit within {CLOSE_TIMEOUT} s of Browser.close")
            assert_no_process_left(self.profile)
        finally:
            for fd in (self.commands, self.replies):
                os.close(fd)
            self.stderr.close()


class Page:
    """One tab of a ``Chromium``."""

    def __init__(self, browser: Chromium, session: str) -> None:
        self.browser = browser
        self.session = session

    def navigate(self, url: str) -> None:
        """Loads ``url`` and waits for its load event (the page's scripts may still be fetching)."""
        seen = len(self.browser.events)
        result = self.browser.send("Page.navigate", {"url": url}, self.session)
        if result.get("errorText"):
            self.browser.fail(f"Chromium could not open {url}: {result['errorText']}")
        self.browser.wait_for_event("Page.loadEventFired", self.session, seen)

    def evaluate(self, expression: str) -> Any:
        """The value of the JavaScript ``expression`` in the page (a promise is awaited).

        DevTools evaluates it whatever the page's Content-Security-Policy says about scripts.
        """
        result = self.browser.send(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
            self.session,
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            thrown = details.get("exception", {}).get("description") or details.get("text")
            self.browser.fail(f"the page's script failed: {thrown}\nin: {expression}")
        return result["result"].get("value")

    def wait_for(self, expression: str, what: str, timeout: float = PAGE_TIMEOUT) -> Any:
        """The first value of ``expression`` that is truthy, polled; fails naming ``what`` after ``timeout``."""
        deadline = time.monotonic() + timeout
        while not (value := self.evaluate(expression)):
            if time.monotonic() > deadline:
                self.browser.fail(f"{what}: not so within {timeout} s; the page's errors: {self.errors()}")
            time.sleep(0.2)
        return value

    def errors(self) -> list[str]:
        """The uncaught errors of the page's own scripts so far."""
        return [
            event["params"]["exceptionDetails"].get("exception", {}).get("description")
            or event["params"]["exceptionDetails"].get("text", "")
            for event in self.browser.events
            if event["method"] == "Runtime.exceptionThrown" and event.get("sessionId") == self.session
        ]


# Whether the grading page's FormGrader has bound a view (formgrade_models.js: GradeUI, CommentUI) to the
# one box that %(selector)s selects. Its ``loaded`` flag is no help: on this server, whose pages load no
# MathJax, ``init`` throws at MathJax after it bound the views.
BOUND = """
(() => {
    const boxes = document.querySelectorAll(%(selector)s);
    return typeof formgrader === "object" && formgrader.grades.loaded === true
        && formgrader.comments.loaded === true && boxes.length === 1
        && [...formgrader.grade_uis, ...formgrader.comment_uis].some(
            (view) => (view.$score || view.$comment)[0] === boxes[0]);
})()
"""

# Typed as a TA types: focus, the value, the events an edit fires, then leaving the box. The views save
# on "change" (GradeUI on .score, CommentUI on .comment, both delegated from the cell).
TYPE_INTO = """
(() => {
    const box = document.querySelector(%(selector)s);
    box.focus();
    box.value = %(text)s;
    box.dispatchEvent(new Event("input", {bubbles: true}));
    box.dispatchEvent(new Event("change", {bubbles: true}));
    box.blur();
})()
"""

# What the formgrader's API has stored for a submission, asked from the page with its login cookie.
STORED = """
(async () => {
    const read = async (what) => {
        const response = await fetch(`/formgrader/api/${what}?submission_id=%(submission)s`);
        if (!response.ok) throw new Error(`${what}: HTTP ${response.status}`);
        return await response.json();
    };
    const grades = await read("grades"), comments = await read("comments");
    return {
        scores: Object.fromEntries(grades.map((grade) => [grade.name, grade.manual_score])),
        comments: Object.fromEntries(comments.map((comment) => [comment.name, comment.manual_comment])),
    };
})()
"""


def enter_manual_grades(
    formgrader_url: str,
    profile: Path,
    assignment: str,
    notebook: str,
    student: str,
    scores: dict[str, float],
    comments: dict[str, str],
) -> None:
    """Grades ``student``'s ``notebook`` of ``assignment`` by hand in the formgrader at ``formgrader_url``
    (its printed address, with ``?token=``), typing into the grading page as a TA does.

    ``scores`` and ``comments`` are keyed by the cells' grade ids. Returns once the formgrader's API
    reports every score and comment stored; fails otherwise.
    """
    base = formgrader_url.split("/formgrader")[0]
    with Chromium(profile) as browser:
        page = browser.open(formgrader_url)  # the token logs the browser in
        # Manual Grading > assignment > notebook: the page's scripts list the submissions.
        page.navigate(f"{base}/formgrader/gradebook/{assignment}/{notebook}")
        link = page.wait_for(
            "[...document.querySelectorAll('a.name-shown')]"
            f".filter((a) => a.textContent === {json.dumps(student)}).map((a) => a.getAttribute('href'))[0]",
            f"a link to {student}'s submission in the manual-grading list",
        )
        submission = link.rstrip("/").rsplit("/", 1)[-1]
        assert link == f"/formgrader/submissions/{submission}", f"unexpected link to the submission: {link}"
        page.navigate(f"{base}{link}/")
        boxes = [(f"input.score[id={json.dumps(grade_id)}]", str(score)) for grade_id, score in scores.items()]
        boxes += [
            (f"textarea.comment[id={json.dumps(grade_id + '-comment')}]", text)
            for grade_id, text in comments.items()
        ]
        for selector, text in boxes:
            page.wait_for(
                BOUND % {"selector": json.dumps(selector)},
                f"one {selector} on {student}'s grading page, with the formgrader's view that saves it",
            )
            page.evaluate(TYPE_INTO % {"selector": json.dumps(selector), "text": json.dumps(text)})

        typed = {
            "scores": {grade_id: float(score) for grade_id, score in scores.items()},
            "comments": dict(comments),
        }
        deadline = time.monotonic() + SAVE_TIMEOUT
        while (stored := stored_grades(page, submission, scores, comments)) != typed:
            if time.monotonic() > deadline:
                browser.fail(
                    f"within {SAVE_TIMEOUT} s the formgrader stored {stored}, not what was typed: {typed}"
                )
            time.sleep(0.2)


def stored_grades(page: Page, submission: str, scores: dict[str, float], comments: dict[str, str]) -> dict:
    """The scores and comments the formgrader's API reports for the cells of ``scores`` and ``comments``."""
    stored = page.evaluate(STORED % {"submission": submission})
    return {
        "scores": {
            grade_id: None if stored["scores"].get(grade_id) is None else float(stored["scores"][grade_id])
            for grade_id in scores
        },
        "comments": {grade_id: stored["comments"].get(grade_id) for grade_id in comments},
    }
