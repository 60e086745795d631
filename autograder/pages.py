"""What the grader shows in a browser: student content made inert.

A submitted notebook is the student's HTML as much as their code: markdown may hold ``<script>``
or ``<img onerror=...>``, a link may be ``javascript:``, a raw cell is pasted into the page as it
is, an output may be JavaScript or HTML, and nbconvert writes some output metadata into tag
attributes unquoted. The feedback pages and the formgrader both render notebooks with nbconvert,
so the grader configures nbconvert in both (the private course's configuration,
:mod:`autograder.batch.private_course`) with:

* :class:`SanitizeStudentContent`, a preprocessor that leaves a notebook with nothing active in
  it: the markdown the student wrote turned into cleaned HTML (:func:`safe_markdown`), no script or
  widget outputs, HTML outputs and raw cells cleaned, output metadata reduced to image sizes. It
  runs when the notebook is graded (so the graded copy on disk is clean too) and again whenever
  nbconvert renders one;
* :func:`clean_html` in place of nbconvert's ``clean_html`` filter, which nbconvert applies to
  rendered markdown when ``HTMLExporter.sanitize_html`` is set: an allow-list of inert tags and
  attributes, links only to http(s) and mailto, images only from ``data:image/...``;
* a Content-Security-Policy as a second wall: :data:`FEEDBACK_CSP` in each feedback page (no
  script at all), and :data:`FORMGRADER_CSP` on every page of the formgrader's server.
"""

from __future__ import annotations

import functools

import bleach
from nbconvert.preprocessors import Preprocessor
from traitlets import default

#: Output metadata the grader sets on what student code printed or raised during hidden tests
#: (autograder.testcells keeps it in the graded notebook; the feedback leaves such outputs out).
HIDDEN_OUTPUT = "mlhep_during_hidden_tests"

#: Tags that render text, tables, lists and images, and do nothing else.
ALLOWED_TAGS = frozenset(
    {
        "a",
        "abbr",
        "b",
        "blockquote",
        "br",
        "caption",
        "code",
        "dd",
        "del",
        "div",
        "dl",
        "dt",
        "em",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "hr",
        "i",
        "img",
        "ins",
        "kbd",
        "li",
        "ol",
        "p",
        "pre",
        "q",
        "s",
        "small",
        "span",
        "strong",
        "sub",
        "sup",
        "table",
        "tbody",
        "td",
        "tfoot",
        "th",
        "thead",
        "tr",
        "u",
        "ul",
    }
)
#: No id or name (an element named like a variable of the page's scripts would replace it), no
#: style, no event handler.
CELL_ATTRIBUTES = ("align", "colspan", "rowspan")
LINK_PROTOCOLS = frozenset({"http", "https", "mailto"})


def _attribute_allowed(tag: str, name: str, value: str) -> bool:
    if name == "title" or (tag in ("td", "th") and name in CELL_ATTRIBUTES):
        return True
    if tag == "a" and name == "href":  # bleach then checks the protocol (data: only for images)
        return not value.strip().lower().startswith("data:")
    if tag == "img" and name in ("alt", "width", "height"):
        return True
    if tag == "img" and name == "src":
        return value.startswith("data:image/")  # an image the notebook carries; nothing fetched
    return False


def clean_html(html: str | bytes) -> str:
    """``html`` with every tag, attribute and link target outside the allow-lists removed
    (elements that carry code, such as ``script`` and ``style``, go with their content)."""
    html = html.decode() if isinstance(html, bytes) else str(html)
    # bleach keeps the text of a tag it strips: take script and style elements out whole first.
    return _cleaner(strip=True).clean(_without_code_elements(html))


def clean_markdown(source: str) -> str:
    """Markdown with its raw HTML made inert: tags outside the allow-list are escaped (so a TA sees
    ``<script>`` as text), attributes outside it dropped. The price: an ``<`` in a student's code
    span shows as ``&lt;``. Markdown's own links are left to :func:`safe_markdown`."""
    return _cleaner(strip=False).clean(source)


@functools.cache
def _cleaner(strip: bool) -> bleach.Cleaner:
    """The allow-lists' cleaner, built once per process (it builds an HTML parser): ``strip`` drops
    tags outside the allow-list, else they are escaped."""
    return bleach.Cleaner(
        tags=ALLOWED_TAGS,
        attributes=_attribute_allowed,
        protocols=LINK_PROTOCOLS | {"data"},
        strip=strip,
        strip_comments=True,
    )


def safe_markdown(source: str) -> str:
    """Student-written markdown as inert HTML, which any markdown renderer passes on as it is: raw HTML
    escaped (:func:`clean_markdown`), the markdown rendered, the result cleaned (:func:`clean_html`).

    Rendering first matters: nbconvert renders markdown with harmful link protocols allowed, and
    nbgrader's formgrader template shows markdown without cleaning it, so ``[x](javascript:...)``
    would be a live link in the TA's page; after rendering, bleach sees every link as a link.
    """
    from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath

    renderer = IPythonRenderer(escape=False, allow_harmful_protocols=False, exclude_anchor_links=True)
    return clean_html(MarkdownWithMath(renderer=renderer).render(clean_markdown(source)))


def _without_code_elements(html: str) -> str:
    import re

    return re.sub(
        r"<(script|style|template|noscript|iframe|object|embed|svg|math)\b.*?(</\1\s*>|$)",
        "",
        html,
        flags=re.IGNORECASE | re.DOTALL,
    )


#: Output data a page may show: text, images (shown as <img>, where SVG scripts never run),
#: cleaned HTML, markdown (rendered, then cleaned). Everything else (JavaScript, widgets, ...) goes.
SHOWN_OUTPUT_TYPES = (
    "text/plain",
    "text/html",
    "text/markdown",
    "text/latex",
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/svg+xml",
)
IMAGE_SIZE_KEYS = ("width", "height")


class SanitizeStudentContent(Preprocessor):
    """Leave nothing active in a notebook (see the module): applied to every notebook a page shows."""

    @default("enabled")
    def _enabled_default(self) -> bool:
        return True  # nbconvert's preprocessors are off unless enabled; nbgrader lists them to run

    def preprocess(self, nb, resources):
        nb.metadata.pop("widgets", None)  # widget state is pasted into the page as a script
        return super().preprocess(nb, resources)

    def preprocess_cell(self, cell, resources, index):
        # Markdown the student could write: all but the locked cells, which autograde restores from
        # the assignment's source (nbformat rendering pastes a markdown cell's raw HTML as it is).
        if cell.cell_type == "markdown" and not cell.metadata.get("nbgrader", {}).get("locked"):
            cell.source = safe_markdown(cell.source)
        if cell.cell_type == "raw":
            # nbconvert pastes a raw cell into the page as it is: clean it, and mark it as text.
            cell.source = clean_html(cell.source)
            cell.metadata.pop("format", None)
            cell.metadata.pop("raw_mimetype", None)
        for attachment in (cell.get("attachments") or {}).values():
            for mime in [mime for mime in attachment if not mime.startswith("image/")]:
                del attachment[mime]
        for output in cell.get("outputs", []):
            self.clean_output(output)
        return cell, resources

    @staticmethod
    def clean_output(output) -> None:
        if "data" in output:
            for mime in [mime for mime in output["data"] if mime not in SHOWN_OUTPUT_TYPES]:
                del output["data"][mime]
            if "text/html" in output["data"]:
                output["data"]["text/html"] = clean_html(output["data"]["text/html"])
        if "metadata" in output:
            # nbconvert writes an image's width and height into the <img> tag unquoted: numbers only.
            # The grader's own mark (what student code said during hidden tests) stays for the feedback.
            kept: dict[str, object] = {}
            for mime, values in dict(output["metadata"]).items():
                if mime == HIDDEN_OUTPUT and type(values) is str:
                    kept[mime] = values
                elif isinstance(values, dict):
                    sizes = {
                        key: value
                        for key, value in values.items()
                        if key in IMAGE_SIZE_KEYS and type(value) in (int, float)
                    }
                    if sizes:
                        kept[mime] = sizes
            output["metadata"] = kept


#: The feedback pages are static: no script of any origin, images only from the page itself,
#: the page's own styles, nothing loaded from elsewhere, no form sent anywhere.
FEEDBACK_CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; font-src data:; "
    "form-action 'none'; base-uri 'none'"
)

#: The formgrader's pages run nbgrader's own scripts, from the server and inline in its templates
#: (its pages have no nonces to tell them from others): scripts from anywhere else, plugins,
#: framing by other sites and forms sent elsewhere are forbidden.
FORMGRADER_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'self'"
)


def with_csp(page: str, policy: str = FEEDBACK_CSP) -> str:
    """``page`` with a Content-Security-Policy meta tag first in its head (before any script)."""
    meta = f'<meta http-equiv="Content-Security-Policy" content="{policy}">'
    head = page.find("<head>")
    if head < 0:
        return meta + page
    return page[: head + len("<head>")] + meta + page[head + len("<head>") :]
