"""nbgrader's formgrader works on the grader's output, seen through headless Chromium.

One student of the class hands in lesson 01's exercise untouched except for the written answer
(graded by hand); another's notebook is full of script. After ``grade``,
``python -m autograder formgrader OUT --port N --no-browser`` starts the formgrader; Chromium then
finds the assignment listed, follows the manual-grading pages to the student's submission and sees
the answer there; a score and a comment typed there reach the gradebook. Stopping the command must
leave no process behind. About 70 s on two cores; needs Chromium (``bash run.sh setup`` installs it)
and the cached test-scale data (MLHEP_DATA_DIR).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import psutil
import pytest
from conftest import TEST_HELD_OUT_SEED

from autograder.batch.run import grade
from autograder.course import EXERCISES_DIR, REPO_ROOT
from autograder.formgrader import free_port
from autograder.pages import FEEDBACK_CSP

from browser import dump_dom, enter_manual_grades, needs_chromium

pytestmark = pytest.mark.grading

ASSIGNMENT = "01_autoencoder_anomaly_detection"
WRITTEN_ANSWER_ID = "why_signals_can_look_normal"  # the markdown cell a person grades
STUDENT = "alice"
ANSWER = "A signal whose jets look like ordinary QCD jets is reconstructed well, answer 4711."
SERVER_START_TIMEOUT = 120


# A student whose notebook carries script in every place a page could render it from: the written
# answer (markdown), a raw cell, and the outputs of a cell of their own. Each piece, if it ran, would
# mark the page's body (the attribute's name is put together at run time, so the text alone never
# matches) and try the server's APIs that a TA's browser could reach.
MALLORY = "mallory"
PWN = 'document.body.setAttribute("data-" + "pwned", "{where}")'
REACH = (
    'fetch("/api/contents/source").then(r => r.text()).then(t => '
    'document.body.setAttribute("data-" + "stolen", t.slice(0, 50)))'
)
HOSTILE_ANSWER = f"""{ANSWER}

<script>{PWN.format(where="markdown script")}; {REACH}</script>
<img src="x" onerror='{PWN.format(where="markdown onerror")}'>
<svg onload='{PWN.format(where="markdown svg")}'></svg>
<iframe srcdoc="<script>parent.{PWN.format(where="markdown iframe").replace('"', "'")}</script>"></iframe>
<a id="submission_id" href="javascript:{PWN.format(where="markdown link").replace('"', "'")}">a link</a>
[another link](javascript:{PWN.format(where="markdown link 2").replace('"', "'")})
"""
HOSTILE_RAW = f'<script>{PWN.format(where="raw cell")}</script><b onmouseover="{PWN.format(where="raw")}">raw</b>'
HOSTILE_OUTPUTS = f"""
from IPython.display import HTML, Javascript, Markdown, display
display(HTML('<script>{PWN.format(where="html output")}</script>'
             '<img src=x onerror=\'{PWN.format(where="html output onerror")}\'>'))
display(Javascript('{PWN.format(where="javascript output")}'))
display(Markdown("<img src=x onerror='{PWN.format(where="markdown output").replace('"', "")}'>"))
display({{"image/png": "iVBORw0KGgo="}}, raw=True,
        metadata={{"image/png": {{"width": "1 onerror={PWN.format(where="width").replace('"', "")}"}}}})
display({{"application/vnd.jupyter.widget-view+json": {{"model_id": "x"}}, "text/plain": "widget"}}, raw=True)
"""


def hostile_exercise() -> str:
    """The released exercise with script in its written answer, a raw cell and outputs."""
    notebook = nbformat.read(EXERCISES_DIR / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    (cell,) = [
        cell for cell in notebook.cells if cell.metadata.get("nbgrader", {}).get("grade_id") == WRITTEN_ANSWER_ID
    ]
    cell.source = HOSTILE_ANSWER
    raw = nbformat.v4.new_raw_cell(HOSTILE_RAW)
    raw.metadata["format"] = "text/html"
    notebook.cells += [raw, nbformat.v4.new_code_cell(HOSTILE_OUTPUTS)]
    notebook.metadata["widgets"] = {
        "application/vnd.jupyter.widget-state+json": {
            "state": {},
            "version_major": 2,
            "version_minor": 0,
            "</script><script>": PWN.format(where="widgets"),
        }
    }
    return nbformat.writes(notebook)


def answered_exercise() -> str:
    """The released exercise with only the written answer filled in (its code cells still raise)."""
    notebook = nbformat.read(EXERCISES_DIR / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    (cell,) = [
        cell for cell in notebook.cells if cell.metadata.get("nbgrader", {}).get("grade_id") == WRITTEN_ANSWER_ID
    ]
    cell.source = ANSWER
    return nbformat.writes(notebook)


@pytest.fixture(scope="module")
def graded_class(tmp_path_factory):
    """grade's output folder for a class of a student who only wrote the written answer and a student
    whose notebook carries script, moved after grading to another folder (as a TA copies it to grade
    elsewhere): the formgrader must work on the copy alone."""
    base = tmp_path_factory.mktemp("formgrader")
    for student, text in ((STUDENT, answered_exercise()), (MALLORY, hostile_exercise())):
        student_folder = base / "submissions" / student
        student_folder.mkdir(parents=True)
        (student_folder / f"{ASSIGNMENT}.ipynb").write_text(text)
    # The exercise's cells raise NotImplementedError at once: short limits are plenty.
    rows = grade(
        ASSIGNMENT,
        base / "submissions",
        base / "out",
        cell_timeout=30,
        notebook_timeout=240,
        held_out_seed=TEST_HELD_OUT_SEED,
    )
    assert [(row["student"], row["status"]) for row in rows] == [(STUDENT, "graded"), (MALLORY, "graded")], rows
    assert all(row["to_grade_by_hand"] > 0 for row in rows), rows  # the written answers wait for a person
    shutil.copytree(base / "out", base / "copy", symlinks=True)
    shutil.rmtree(base / "out")
    return base / "copy"


@pytest.fixture(scope="module")
def formgrader(graded_class, tmp_path_factory):
    """The running formgrader command: (its address with the token, its process, the processes it started)."""
    port = free_port()
    output = tmp_path_factory.mktemp("formgrader-command") / "stdout.txt"
    with open(output, "w") as stdout:
        # Its own session, so that stopping it here is like a TA's Ctrl-C and never reaches pytest.
        command = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "autograder",
                "formgrader",
                str(graded_class),
                "--port",
                str(port),
                "--no-browser",
            ],
            cwd=REPO_ROOT,
            stdout=stdout,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        url = None
        while url is None and command.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
            url = re.search(r"http://\S+/formgrader\?token=\w+", output.read_text())
        assert url, f"the formgrader did not print its address:\n{output.read_text()}"
        started = psutil.Process(command.pid).children(recursive=True)
        yield url.group(0), command, started
    finally:
        if command.poll() is None:  # a test failed before the shutdown test: clean up anyway
            os.killpg(command.pid, signal.SIGKILL)
            command.wait()


@pytest.fixture(scope="module")
def browser_profile(tmp_path_factory):
    """Chromium's profile folder, shared by the pages of one session like a TA's browser."""
    return tmp_path_factory.mktemp("chromium-profile")


@needs_chromium
def test_formgrader_lists_the_assignment(formgrader, browser_profile):
    url, _, _ = formgrader
    assert re.match(r"http://127\.0\.0\.1:\d+/formgrader\?token=", url), url
    page = dump_dom(url, browser_profile)
    # The table of assignments is filled in by the page's scripts from the formgrader's API. The
    # private course has only the graded assignment (the repository's course would list every lesson),
    # with one submission.
    listed = re.findall(r'<td class="name[^"]*" data-order="([^"]*)">', page)
    assert listed == [ASSIGNMENT], f"the formgrader lists {listed}, not the graded course:\n{page[-3000:]}"
    # Counted from the copy's gradebook: the original folder is gone.
    submissions = re.search(r'<td class="[^"]*num-submissions[^"]*"[^>]*><a [^>]*>(\d+)</a>', page)
    assert submissions and submissions.group(1) == "2", "the formgrader does not count the two submissions"


@needs_chromium
def test_manual_grading_shows_the_written_answer(formgrader, browser_profile):
    url, _, _ = formgrader
    # The printed address logs the browser in (a cookie for the whole server); then the TA clicks on.
    dump_dom(url, browser_profile)
    base = url.split("/formgrader?token=")[0]
    # Manual Grading > assignment > notebook: one row per submission, linking to its grading page.
    listing = dump_dom(f"{base}/formgrader/gradebook/{ASSIGNMENT}/{ASSIGNMENT}", browser_profile)
    link = re.search(rf'<a class="name-shown" href="(/formgrader/submissions/\w+)">{STUDENT}</a>', listing)
    assert link, f"no submission of {STUDENT} in the manual-grading list:\n{listing[-3000:]}"

    page = dump_dom(f"{base}{link.group(1)}/", browser_profile)
    assert ANSWER in page, f"the grading page does not show {STUDENT}'s written answer"
    assert re.search(rf'<input [^>]*id="{WRITTEN_ANSWER_ID}"[^>]*type="number"', page), (
        f"the grading page has no score box for {WRITTEN_ANSWER_ID}"
    )


def gradebook_scores(out_dir: Path) -> list:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{out_dir / 'nbgrader' / 'gradebook.db'}", course_id="mlhep") as gradebook:
        return sorted(
            (grade.student.id, grade.name, grade.score, grade.max_score)
            for submission in gradebook.assignment_submissions(ASSIGNMENT)
            for notebook in submission.notebooks
            for grade in notebook.grades
        )


def marks(page: str) -> list[str]:
    """What the student's script left on the page's body, if any of it ran."""
    body = re.search(r"<body[^>]*>", page)
    assert body, page[:2000]
    return re.findall(r'data-(?:pwned|stolen)="[^"]*"', body.group(0))


@needs_chromium
def test_no_script_of_a_student_runs_in_the_grading_page(formgrader, graded_class, browser_profile):
    url, _, _ = formgrader
    before = gradebook_scores(graded_class)
    dump_dom(url, browser_profile)
    base = url.split("/formgrader?token=")[0]
    listing = dump_dom(f"{base}/formgrader/gradebook/{ASSIGNMENT}/{ASSIGNMENT}", browser_profile)
    link = re.search(rf'<a class="name-shown" href="(/formgrader/submissions/\w+)">{MALLORY}</a>', listing)
    assert link, listing[-3000:]
    page = dump_dom(f"{base}{link.group(1)}/", browser_profile)
    assert ANSWER in page and re.search(rf'<input [^>]*id="{WRITTEN_ANSWER_ID}"', page), (
        "the grading page does not show the answer and its score box"
    )  # the page works
    assert not marks(page), marks(page)
    # Nor on a click: no link or image of the student's leads to script.
    assert not re.search(r"""(href|src)\s*=\s*["']?\s*(javascript|data:text)""", page, re.IGNORECASE)
    assert 'id="submission_id"' not in page  # no element of the student's may take a script's name
    assert gradebook_scores(graded_class) == before


@needs_chromium
def test_no_script_of_a_student_runs_in_the_feedback_page(graded_class, browser_profile):
    feedback = graded_class / "feedback" / MALLORY / f"{ASSIGNMENT}.html"
    text = feedback.read_text()
    assert f'<meta http-equiv="Content-Security-Policy" content="{FEEDBACK_CSP}">' in text
    page = dump_dom(feedback.as_uri(), browser_profile)
    assert ANSWER in page and not marks(page), marks(page)


@needs_chromium
def test_the_server_exposes_only_what_grading_needs(formgrader):
    import urllib.error
    import urllib.request

    url, _, _ = formgrader
    base, token = url.split("/formgrader?token=")

    def status(path: str) -> int:
        request = urllib.request.Request(f"{base}{path}", headers={"Authorization": f"token {token}"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    assert status("/formgrader/api/assignments") == 200  # what grading needs, with the same token
    refused = {
        path: status(path)
        for path in (
            "/api/contents",
            "/api/contents/source",
            "/files/gradebook.db",
            "/files/nbgrader_config.py",
            "/api/kernels",
            "/api/kernelspecs",
            "/api/sessions",
            "/api/terminals",
            "/terminals/1",
            "/lab",
            "/tree",
            "/notebooks/source",
            "/api/nbconvert",
            "/assignments",
            "/lsp/status",
        )
    }
    assert all(code in (403, 404) for code in refused.values()), refused
    headers = urllib.request.urlopen(
        urllib.request.Request(f"{base}/formgrader", headers={"Authorization": f"token {token}"}), timeout=30
    ).headers
    assert "object-src 'none'" in headers.get("Content-Security-Policy", ""), headers


def hand_grading(out_dir: Path, student: str, grade_id: str) -> tuple[float | None, float, str | None]:
    """The score a person gave ``student``'s cell ``grade_id``, its points, and the comment on it."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{out_dir / 'nbgrader' / 'gradebook.db'}", course_id="mlhep") as gradebook:
        grade = gradebook.find_grade(grade_id, ASSIGNMENT, ASSIGNMENT, student)
        comment = gradebook.find_comment(grade_id, ASSIGNMENT, ASSIGNMENT, student)
        return grade.manual_score, grade.max_score, comment.manual_comment


@needs_chromium
def test_a_ta_enters_a_score_and_a_comment(formgrader, graded_class, browser_profile):
    url, _, _ = formgrader
    before = gradebook_scores(graded_class)
    manual_score, max_score, manual_comment = hand_grading(graded_class, STUDENT, WRITTEN_ANSWER_ID)
    assert manual_score is None and manual_comment is None, "the written answer was graded before the TA"
    score = max_score * 3 / 4  # neither full nor no credit, and not a whole number
    comment = "Right: QCD-like jets are reconstructed well, so their loss is low — see *lesson 01*."

    enter_manual_grades(
        url,
        browser_profile,
        ASSIGNMENT,
        ASSIGNMENT,
        STUDENT,
        {WRITTEN_ANSWER_ID: score},
        {WRITTEN_ANSWER_ID: comment},
    )

    assert hand_grading(graded_class, STUDENT, WRITTEN_ANSWER_ID) == (score, max_score, comment)
    expected = sorted(
        (student, name, score if (student, name) == (STUDENT, WRITTEN_ANSWER_ID) else old, points)
        for student, name, old, points in before
    )
    assert gradebook_scores(graded_class) == expected, "grades other than the one typed changed"


@needs_chromium
def test_stopping_leaves_no_process_behind(formgrader, graded_class):
    _, command, started = formgrader
    assert any("jupyter_server" in " ".join(process.cmdline()) for process in started), started
    command.send_signal(signal.SIGTERM)  # as a job scheduler stops it; Ctrl-C takes the same way out
    assert command.wait(timeout=60) == 128 + signal.SIGTERM
    _, alive = psutil.wait_procs(started, timeout=30)
    assert not alive, f"processes left running after the formgrader stopped: {alive}"
    in_output = [
        process.info["pid"]
        for process in psutil.process_iter(["pid", "cwd"])
        if process.info["cwd"] and Path(process.info["cwd"]).is_relative_to(graded_class)
    ]
    assert not in_output, f"processes left running in {graded_class}: {in_output}"


def test_not_an_output_folder_exits_with_2_and_no_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "autograder", "formgrader", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 2, result
    assert "is not a grading output folder" in result.stderr and "Traceback" not in result.stderr, result.stderr
