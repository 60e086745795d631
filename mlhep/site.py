"""The course as a static website that lecturers can share: the executed lectures as HTML pages.

    python -m mlhep.site EXECUTED_DIR OUT_DIR [--summary SUMMARY_JSON]

rebuilds the site from an existing build, for example ``python -m mlhep.site build/notebooks
build/site`` (the recorded figures come from ``build/summary.json``, next to EXECUTED_DIR, unless
``--summary`` names another file). ``python -m mlhep.build`` calls :func:`build_site` after writing
its summary. The site is ``index.html`` (the lesson table and the recorded-figures table) and one
page per executed lecture, ``lectures/NN_name.html``.

Choices:

* **nbconvert's HTML exporter**, not Jupyter Book 2 / MyST: nbconvert is already installed and
  pinned with the course (nbgrader needs it), so the site adds no dependency and builds offline.
  Jupyter Book 2 is built on the MyST engine, which needs Node.js and downloads its theme and
  packages from the network at build time; a course build must run on a machine without either.
* **Pages that need no network.** nbconvert's 'lab' template inlines its CSS, and matplotlib's
  figures are inline ``data:`` PNGs (``embed_images=True`` inlines images that markdown cells
  point to as well). The template's scripts from CDNs are dropped: require.js and the widget
  renderer (no lecture output needs them; the course's progress bars fall back to text) and
  mermaid (no lecture uses it). MathJax alone is still loaded from its CDN, asynchronously, to
  typeset the math when the page is online: offline the page reads the same with the math as TeX
  source, and nothing waits for the network. Every link is relative, so the site works from
  ``file://``, from any folder of a plain static server, and copied elsewhere as a whole.
* **Lectures only.** The solution notebooks hold the reference solutions and the hidden tests of
  the graded exercises, so neither they nor their outputs are published: the site has no page of
  them, and the summary table shows their status and run time but withholds the figures they
  recorded (numbers a student's answer is checked against). The exercise versions are not
  published either: students work in the notebook itself (``exercises/NN_name/``, whose path
  the lesson table gives), an unexecuted exercise page would add nothing a lecturer can show, and
  a page built from the solutions' executed outputs would leak them. Lecture notebooks are the
  course's own trusted content and are converted as they are.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import sys
import time
from pathlib import Path

from .notebooks import REPO

#: nbconvert's 'lab' template without the scripts it fetches from CDNs (see the module docstring);
#: each page gets a link back to the index.
TEMPLATE = "mlhep_site.html.j2"
TEMPLATE_SOURCE = r"""{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block html_head_js_mathjax -%}
<!-- MathJax typesets the math when online; offline the math reads as TeX source. -->
<script type="text/x-mathjax-config">
MathJax.Hub.Config({
  tex2jax: {inlineMath: [["$", "$"], ["\\(", "\\)"]], displayMath: [["$$", "$$"], ["\\[", "\\]"]],
            processEscapes: true, processEnvironments: true},
  TeX: {equationNumbers: {autoNumber: "AMS", useLabelIds: true}},
  displayAlign: "center", messageStyle: "none", CommonHTML: {linebreaks: {automatic: true}}
});
</script>
<script async src="{{ resources.mathjax_url }}"></script>
{%- endblock html_head_js_mathjax -%}
{%- block body_header -%}
{{ super() }}
<nav class="mlhep-site-nav" style="padding: 0.5em 1em; font-family: sans-serif;">
<a href="../index.html">&larr; Course index</a></nav>
{%- endblock body_header -%}
"""

INDEX_CSS = """
body { font-family: system-ui, sans-serif; max-width: 60em; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
code { font-size: 0.95em; }
td.figures { font-family: monospace; font-size: 0.85em; }
"""


def lesson_title(notebook) -> str:
    """The text of the notebook's first markdown heading, without markdown ('' if it has none)."""
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                heading = re.match(r"\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
                if heading:
                    return re.sub(r"[*_`]", "", heading.group(1)).strip()
    return ""


def _figures_text(row: dict) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row["figures"].items())


def _exporter():
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    return HTMLExporter(
        template_name="lab",
        template_file=TEMPLATE,
        extra_loaders=[DictLoader({TEMPLATE: TEMPLATE_SOURCE})],
        embed_images=True,
    )


def build_site(executed_dir: Path, rows: list[dict], out_dir: Path) -> Path:
    """Write the site for the lectures executed in ``executed_dir`` (``course/*.ipynb`` there, as
    ``python -m mlhep.build`` writes them) and the build's summary ``rows``; returns its index.html.

    A lecture with a row but no executed copy is listed without a page. The pages of an earlier
    site in ``out_dir`` (its ``lectures/``) are replaced; nothing else there is touched.
    """
    import shutil

    import nbformat

    executed_dir, out_dir = Path(executed_dir), Path(out_dir)
    statuses = {row["notebook"]: row["status"] for row in rows}
    lectures = sorted(
        {p.name for p in (executed_dir / "course").glob("*.ipynb")}
        | {Path(name).name for name in statuses if name.startswith("course/")}
    )
    if (out_dir / "lectures").exists():
        shutil.rmtree(out_dir / "lectures")
    (out_dir / "lectures").mkdir(parents=True)
    exporter = _exporter()

    lesson_rows = []
    for name in lectures:
        stem = Path(name).stem
        number, _, rest = stem.partition("_")
        executed = executed_dir / "course" / name
        title, link = rest.replace("_", " ").capitalize(), "not executed"
        if executed.exists():
            notebook = nbformat.read(executed, as_version=4)
            title = lesson_title(notebook) or title
        # The table has a column for the number: "00 · Getting started" reads "Getting started" there.
        short_title = re.sub(rf"^{re.escape(number)}\s*[·:.\-–—]\s*", "", title) or title
        if executed.exists():
            # The page's <title>: the lesson's heading, not the file's name; markdown images are
            # found (and embedded) where the lecture ran, next to its source.
            body, _ = exporter.from_notebook_node(
                notebook, resources={"metadata": {"name": title, "path": str(REPO / "course")}}
            )
            (out_dir / "lectures" / f"{stem}.html").write_text(body, encoding="utf-8")
            link = f'<a href="lectures/{html.escape(stem)}.html">lecture</a>'
        has_exercise = (
            any(n.startswith(f"solutions/{stem}/") for n in statuses)
            or (executed_dir / "solutions" / stem).is_dir()
            or (REPO / "exercises" / stem).is_dir()
        )
        exercise = f"<code>exercises/{html.escape(stem)}/</code>" if has_exercise else "&mdash;"
        status = html.escape(statuses[f"course/{name}"]) if f"course/{name}" in statuses else "&mdash;"
        lesson_rows.append(
            f"<tr><td>{html.escape(number)}</td><td>{html.escape(short_title)}</td><td>{link}</td>"
            f"<td>{exercise}</td><td>{status}</td></tr>"
        )

    summary_rows = []
    for row in rows:
        solution = not row["notebook"].startswith("course/")
        figures = (
            "<em>withheld: reference solution</em>"
            if solution and row["figures"]
            else html.escape(_figures_text(row))
        )
        summary_rows.append(
            f"<tr><td><code>{html.escape(row['notebook'])}</code></td>"
            f"<td>{html.escape(row['status'])}</td><td>{row['seconds'] / 60:.1f}</td>"
            f'<td class="figures">{figures}</td></tr>'
        )

    index = out_dir / "index.html"
    index.write_text(
        f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>Machine learning for high-energy physics</title>
<style>{INDEX_CSS}</style>
</head>
<body>
<h1>Machine learning for high-energy physics</h1>
<p>The lectures as they ran in the course build, with their outputs and figures. Each lesson's
exercise is a notebook to work on in Jupyter, in the course repository's folder given below;
its reference solution is not published here.</p>
<h2>Lessons</h2>
<table id="lessons">
<thead><tr><th>lesson</th><th>title</th><th>lecture</th><th>exercise</th><th>build status</th></tr></thead>
<tbody>
{chr(10).join(lesson_rows)}
</tbody>
</table>
<h2>Recorded figures</h2>
<p>The key numbers each notebook recorded in this build (those of the reference solutions are
withheld).</p>
<table id="summary">
<thead><tr><th>notebook</th><th>status</th><th>minutes</th><th>recorded figures</th></tr></thead>
<tbody>
{chr(10).join(summary_rows)}
</tbody>
</table>
</body>
</html>
""",
        encoding="utf-8",
    )
    return index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mlhep.site", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("executed_dir", type=Path, help="the executed notebooks (build/notebooks)")
    parser.add_argument("out_dir", type=Path, help="the site's folder (build/site)")
    parser.add_argument(
        "--summary", type=Path, default=None, help="the build's summary.json (default: next to EXECUTED_DIR)"
    )
    args = parser.parse_args(argv)
    summary = args.summary or args.executed_dir.parent / "summary.json"
    if not args.executed_dir.is_dir():
        print(f"error: {args.executed_dir} is not a folder of executed notebooks", file=sys.stderr)
        return 2
    rows = json.loads(summary.read_text()) if summary.exists() else []
    if not summary.exists():
        print(f"warning: no {summary}: the site has no recorded figures", file=sys.stderr)
    start = time.perf_counter()
    index = build_site(args.executed_dir, rows, args.out_dir)
    print(f"static site in {index} ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
