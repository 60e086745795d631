"""autograder.pages: student content made inert before any page renders it (no browser needed here;
tests/test_formgrader.py opens the pages in Chromium)."""

from __future__ import annotations

import re

import nbformat
import pytest

from autograder.pages import (
    FEEDBACK_CSP,
    HIDDEN_OUTPUT,
    SanitizeStudentContent,
    clean_html,
    clean_markdown,
    safe_markdown,
    with_csp,
)

ACTIVE = re.compile(r"<\s*(script|iframe|svg|object|embed|style)\b|\bon\w+\s*=|javascript:", re.IGNORECASE)


@pytest.mark.parametrize(
    "html",
    [
        "<script>alert(1)</script>",
        '<img src="x" onerror="alert(1)">',
        '<a href="javascript:alert(1)">x</a>',
        '<a href="data:text/html,<script>alert(1)</script>">x</a>',
        "<svg onload=alert(1)></svg>",
        '<iframe srcdoc="<script>alert(1)</script>"></iframe>',
        '<div style="background:url(javascript:alert(1))">x</div>',
        "<scr<script>ipt>alert(1)</script>",
        '<b onmouseover="alert(1)">bold</b>',
        "<ScRiPt >alert(1)</sCrIpT >",
    ],
)
def test_clean_html_leaves_nothing_active(html):
    cleaned = clean_html(html)
    assert not ACTIVE.search(cleaned), cleaned


def test_clean_html_keeps_what_reads():
    html = (
        '<h2>Result</h2><p>AUC <b>0.71</b>, see <a href="https://arxiv.org/abs/1811.10276">the paper</a>'
        '</p><table><tr><td>1</td></tr></table><img src="data:image/png;base64,iVBORw0KGgo=" alt="plot">'
    )
    cleaned = clean_html(html)
    for kept in (
        "<h2>Result</h2>",
        "<b>0.71</b>",
        'href="https://arxiv.org/abs/1811.10276"',
        "<td>1</td>",
        'src="data:image/png;base64,iVBORw0KGgo="',
    ):
        assert kept in cleaned, cleaned


def test_markdown_html_is_escaped_so_a_ta_sees_it():
    cleaned = clean_markdown("My answer.\n\n<script>alert(1)</script> and <b>bold</b>")
    assert "&lt;script&gt;" in cleaned and "<b>bold</b>" in cleaned and "<script>" not in cleaned


def hostile_notebook() -> nbformat.NotebookNode:
    notebook = nbformat.v4.new_notebook()
    answer = nbformat.v4.new_markdown_cell("answer <img src=x onerror=alert(1)>")
    answer.metadata["nbgrader"] = {"solution": True, "grade": True, "locked": False}
    given = nbformat.v4.new_markdown_cell("<b>Given</b> text, restored from the source")
    given.metadata["nbgrader"] = {"solution": False, "grade": False, "locked": True}
    raw = nbformat.v4.new_raw_cell("<script>alert(1)</script>")
    raw.metadata["format"] = "text/html"
    code = nbformat.v4.new_code_cell("x")
    code.outputs = [
        nbformat.v4.new_output("display_data", data={"application/javascript": "alert(1)", "text/plain": "js"}),
        nbformat.v4.new_output("display_data", data={"text/html": "<script>alert(1)</script><i>ok</i>"}),
        nbformat.v4.new_output(
            "display_data",
            data={"image/png": "iVBORw0KGgo="},
            metadata={"image/png": {"width": "1 onerror=alert(1)", "height": 20}},
        ),
        nbformat.v4.new_output(
            "display_data", data={"text/plain": "said during hidden tests"}, metadata={HIDDEN_OUTPUT: "stdout"}
        ),
    ]
    notebook.cells = [answer, given, raw, code]
    notebook.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"</script>": "x"}}
    return notebook


def test_the_preprocessor_runs_when_listed_and_leaves_nothing_active():
    notebook, _ = SanitizeStudentContent()(hostile_notebook(), {})  # enabled without being asked
    answer, given, raw, code = notebook.cells
    assert not ACTIVE.search(answer.source) and "answer" in answer.source
    assert given.source == "<b>Given</b> text, restored from the source"  # the course's own cell
    assert not ACTIVE.search(raw.source) and "format" not in raw.metadata
    javascript, html, image, hidden = code.outputs
    assert "application/javascript" not in javascript.data and javascript.data["text/plain"] == "js"
    assert html.data["text/html"] == "<i>ok</i>"
    assert image.metadata == {"image/png": {"height": 20}}
    assert hidden.metadata == {HIDDEN_OUTPUT: "stdout"}  # the feedback needs the grader's mark
    assert "widgets" not in notebook.metadata


def test_a_page_gets_its_policy_before_anything_else():
    page = with_csp("<html><head><script>x</script></head></html>")
    assert page.index(f'content="{FEEDBACK_CSP}"') < page.index("<script>")
    assert "default-src 'none'" in FEEDBACK_CSP and "script-src" not in FEEDBACK_CSP


@pytest.mark.parametrize(
    "markdown",
    [
        "[click](javascript:alert(1))",
        "[click](jav&#x61;script:alert(1))",
        "[click][one]\n\n[one]: javascript:alert(1)",
        "<javascript:alert(1)>",
        "![x](javascript:alert(1))",
        "[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
        "`[x](javascript:alert(1))`\n\n```\n\n[x](javascript:alert(1))\n```",
    ],
)
def test_markdown_links_never_reach_a_page_live(markdown):
    # nbconvert renders markdown with harmful link protocols allowed, and the formgrader's template
    # cleans nothing: what is stored must stay inert when rendered again, by any renderer.
    from nbconvert.filters.markdown_mistune import markdown2html_mistune

    stored = safe_markdown(markdown)
    for page in (stored, markdown2html_mistune(stored), markdown2html_mistune(safe_markdown(stored))):
        assert not re.search(r"""(href|src)\s*=\s*["']?\s*(javascript|data:text)""", page, re.IGNORECASE), page


def test_safe_markdown_keeps_what_reads():
    stored = safe_markdown(
        "## Answer\n\nThe **AUC** is $0.71$, see [the paper](https://arxiv.org/abs/1811.10276)."
    )
    for kept in ("<h2>Answer", "<strong>AUC</strong>", "$0.71$", 'href="https://arxiv.org/abs/1811.10276"'):
        assert kept in stored, stored
