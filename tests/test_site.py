"""The course's static website (mlhep.site), built from the lectures executed at CI scale and seen
through headless Chromium, offline, from a plain static server.

The site is built from the copies tests/test_notebooks.py executed in this session (it runs first);
a lecture without one (this module run alone, or with -k) is executed here at CI scale. The server
serves the site from a sub-folder, so only relative links work; Chromium resolves no host name, so
a page that needed a CDN for its content would show it. A probe page of the test's own, from the
same server, loads each page in a frame and reports what the browser made of it: its title, links,
and every image's decoded width. Needs Chromium (``bash run.sh setup`` installs it).
"""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import pytest

from autograder.formgrader import free_port
from mlhep.figures import read_figures
from mlhep.notebooks import REPO, course_notebooks, run_notebook
from mlhep.site import build_site, lesson_title

from browser import dump_dom, needs_chromium
from notebook_expectations import EXPECTATIONS

pytestmark = pytest.mark.notebooks

#: No host name resolves, as on a machine without network, but the test's server at 127.0.0.1: a page
#: that needed a CDN for its content would show it.
OFFLINE = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"
LECTURES = [path for path in course_notebooks() if path.parent.name == "course"]
SOLUTIONS = [path for path in course_notebooks() if "solutions" in path.relative_to(REPO).parts]
#: A figure recorded by no lecture, put in each solution's summary row: the site must withhold it.
REFERENCE_FIGURE = "reference_answer_4711"

# Loads ?page=URL in a frame (same server, same origin), waits for its images to decode, and writes
# what the browser made of the page into #result, which --dump-dom then shows.
PROBE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>probe</title></head>
<body><pre id="result">pending</pre>
<iframe id="page" style="width: 1200px; height: 900px"></iframe>
<script>
const frame = document.getElementById("page");
frame.onload = async () => {
  const doc = frame.contentDocument;
  const images = Array.from(doc.images);
  // decode() settles once the image is decoded, or fails on a broken one; the timer keeps a busy
  // browser from holding the report back (the width is checked either way).
  const decoded = await Promise.all(images.map(image => Promise.race([
    image.decode().then(() => "ok", error => String(error)),
    new Promise(settle => setTimeout(() => settle("timeout"), 5000))])));
  document.getElementById("result").textContent = JSON.stringify({
    url: frame.contentWindow.location.href,
    title: doc.title,
    headings: Array.from(doc.querySelectorAll("h1")).map(h => h.textContent),
    links: Array.from(doc.querySelectorAll("a[href]")).map(a => ({href: a.href, text: a.textContent})),
    images: images.map(image => image.naturalWidth),
    decoded: decoded,
    text: doc.body.innerText,
  });
};
frame.src = new URLSearchParams(location.search).get("page");
</script>
</body></html>
"""


def rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def png_outputs(executed: Path) -> int:
    """How many figures (image/png outputs) the executed notebook has."""
    notebook = nbformat.read(executed, as_version=4)
    return sum(
        "image/png" in output.get("data", {}) for cell in notebook.cells for output in cell.get("outputs", [])
    )


@pytest.fixture(scope="module")
def site(executed_notebooks, tmp_path_factory):
    """(the site's folder, build seconds): built from the session's executed lectures."""
    for path in LECTURES:
        executed = executed_notebooks / rel(path)
        if not executed.exists():  # test_notebooks did not run it in this session
            run_notebook(path, executed, EXPECTATIONS[rel(path)]["parameters"])
    rows = [
        {
            "notebook": rel(path),
            "status": "ok",
            "seconds": 1.0,
            "figures": read_figures(executed_notebooks / rel(path)),
        }
        for path in LECTURES
    ]
    rows += [
        {"notebook": rel(path), "status": "ok", "seconds": 1.0, "figures": {REFERENCE_FIGURE: 47.11}}
        for path in SOLUTIONS
    ]
    root = tmp_path_factory.mktemp("site-root")
    start = time.perf_counter()
    index = build_site(executed_notebooks, rows, root / "site")
    seconds = time.perf_counter() - start
    assert index == root / "site" / "index.html" and index.exists()
    return index.parent, seconds


@pytest.fixture(scope="module")
def server(site):
    """The address of a plain static server (python -m http.server) whose root holds the site in
    site/ and the probe page."""
    folder, _ = site
    (folder.parent / "probe.html").write_text(PROBE)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(folder.parent)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{base}/probe.html", timeout=5).close()
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, "http.server did not start"
                time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


def probe(server: str, page: str, profile: Path) -> dict:
    """What the browser made of ``page`` (a URL on the server)."""
    dom = dump_dom(f"{server}/probe.html?page={urllib.request.quote(page, safe='')}", profile, OFFLINE)
    result = re.search(r'<pre id="result">(.*?)</pre>', dom, re.DOTALL)
    assert result and result.group(1) != "pending", f"the probe did not report on {page}:\n{dom[-2000:]}"
    return json.loads(html.unescape(result.group(1)))


@pytest.fixture(scope="module")
def index(server, tmp_path_factory):
    return probe(server, f"{server}/site/index.html", tmp_path_factory.mktemp("chromium-profile"))


def title(executed: Path) -> str:
    return lesson_title(nbformat.read(executed, as_version=4))


@needs_chromium
def test_the_index_lists_every_lecture_with_a_working_link(index, server, executed_notebooks):
    assert index["url"] == f"{server}/site/index.html" and index["headings"], index
    links = {link["href"] for link in index["links"]}
    for path in LECTURES:
        href = f"{server}/site/lectures/{path.stem}.html"
        assert href in links, f"the index has no link to {rel(path)}'s page: {sorted(links)}"
        with urllib.request.urlopen(href, timeout=30) as response:
            assert response.status == 200, href
        # Its title, less the lesson number (a column of its own): "00 · Getting started" -> "Getting started".
        assert title(executed_notebooks / rel(path)).split("·")[-1].strip() in index["text"], index["text"]
    for path in SOLUTIONS:  # where each lesson's exercise is
        assert f"exercises/{path.parent.name}/" in index["text"], index["text"]
    # The summary table: a row per notebook of the build, the solutions' figures withheld.
    assert all(rel(path) in index["text"] for path in LECTURES + SOLUTIONS), index["text"]
    assert "auc_ht=" in index["text"] and "withheld" in index["text"], index["text"]


@needs_chromium
def test_every_lecture_page_loads_with_its_figures(site, server, executed_notebooks, tmp_path_factory):
    _, seconds = site
    profile = tmp_path_factory.mktemp("chromium-profile")
    problems = []
    for path in LECTURES:
        url = f"{server}/site/lectures/{path.stem}.html"
        page = probe(server, url, profile)
        figures = png_outputs(executed_notebooks / rel(path))
        broken = [how for how in page["decoded"] if how not in ("ok", "timeout")]  # decode() failed
        decoded = [width for width in page["images"] if width > 0]
        if page["url"] != url or page["title"] != title(executed_notebooks / rel(path)):
            problems.append(f"{rel(path)}: no page at {url} (title {page['title']!r})")
        if figures == 0:
            problems.append(f"{rel(path)}: the executed notebook has no figure to check")
        if len(page["images"]) < figures or len(decoded) < len(page["images"]) or broken:
            problems.append(
                f"{rel(path)}: {len(page['images'])} images, {len(decoded)} of them decoded by the "
                f"browser ({broken or 'no error'}); the executed notebook has {figures} figures"
            )
        if f"{server}/site/index.html" not in [link["href"] for link in page["links"]]:
            problems.append(f"{rel(path)}: no link back to the index")
    assert not problems, "\n".join(problems)
    print(f"site built in {seconds:.1f} s; {len(LECTURES)} lecture pages checked in Chromium")


def test_no_solution_is_published_and_no_content_needs_the_network(site):
    folder, _ = site
    files = sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())
    assert files == sorted(["index.html"] + [f"lectures/{path.stem}.html" for path in LECTURES]), files
    for path in folder.rglob("*.html"):
        text = path.read_text()
        for secret in (REFERENCE_FIGURE, "BEGIN SOLUTION", "BEGIN HIDDEN TESTS"):
            assert secret not in text, f"{path.relative_to(folder)} publishes {secret!r}"
        # Nothing loaded from elsewhere but MathJax, asynchronously (offline the math reads as TeX).
        remote = re.findall(r"<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)=[\"']?(?:https?:)?//[^>]*>", text)
        assert all("mathjax" in tag.lower() and " async" in tag for tag in remote), remote


@needs_chromium
def test_the_index_works_from_a_file_url(site, tmp_path_factory):
    folder, _ = site
    dom = dump_dom((folder / "index.html").as_uri(), tmp_path_factory.mktemp("chromium-profile"), OFFLINE)
    for path in LECTURES:
        assert f'href="lectures/{path.stem}.html"' in dom, dom[-3000:]
        assert (folder / "lectures" / f"{path.stem}.html").exists()
