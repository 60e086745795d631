"""The course's main job: regenerate the exercises, then run every lecture and solution notebook.

    python -m mlhep.build [--out build] [--only PATTERN] [--source pythia]

Executed copies go to ``build/notebooks/``; the figures each notebook recorded are collected in
``build/summary.md`` and ``build/summary.json``. Notebooks run at their lecture defaults. Then
the executed lectures become a static website in ``build/site/`` (see :mod:`mlhep.site`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from tqdm.auto import tqdm

from .figures import read_figures
from .notebooks import REPO, course_notebooks, run_notebook


def summary_markdown(rows: list[dict]) -> str:
    lines = ["| notebook | status | minutes | recorded figures |", "|---|---|---|---|"]
    for row in rows:
        figures = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row["figures"].items()
        )
        lines.append(f"| {row['notebook']} | {row['status']} | {row['seconds'] / 60:.1f} | {figures} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mlhep.build", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=REPO / "build")
    parser.add_argument("--only", default="", help="run only notebooks whose path contains this text")
    parser.add_argument("--skip-release", action="store_true", help="do not regenerate exercises/")
    parser.add_argument(
        "--source",
        default=None,
        choices=("auto", "pythia", "opendata"),
        help="data source injected into every notebook (default: each notebook's own)",
    )
    args = parser.parse_args(argv)

    if not args.skip_release:
        from autograder.release import release

        release()
    notebooks = [p for p in course_notebooks() if args.only in str(p.relative_to(REPO))]
    rows = []
    for path in tqdm(notebooks, desc="notebooks", unit="nb"):
        name = str(path.relative_to(REPO))
        start = time.perf_counter()
        try:
            parameters = {"source": args.source} if args.source else {}
            executed = run_notebook(path, args.out / "notebooks" / name, parameters)
            status, figures = "ok", read_figures(executed)
        except Exception as exc:  # keep going: report every notebook's status at the end
            status, figures = f"failed: {type(exc).__name__}", {}
            print(f"{name} failed:\n{exc}", file=sys.stderr)
        rows.append(
            {
                "notebook": name,
                "status": status,
                "seconds": round(time.perf_counter() - start, 1),
                "figures": figures,
            }
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(rows, indent=1))
    table = summary_markdown(rows)
    (args.out / "summary.md").write_text(table)
    print(table)
    print(f"executed notebooks in {args.out / 'notebooks'}; summary in {args.out / 'summary.md'}")
    site_ok = True
    try:  # after the summary, and reported apart: a site that fails to build hides no notebook's failure
        from .site import build_site

        start = time.perf_counter()
        index = build_site(args.out / "notebooks", rows, args.out / "site")
        print(f"static site in {index.parent} (open {index}; {time.perf_counter() - start:.1f} s to build)")
    except Exception as exc:
        site_ok = False
        print(f"the static site could not be built: {type(exc).__name__}: {exc}", file=sys.stderr)
    failed = [r["notebook"] for r in rows if r["status"] != "ok"]
    if failed:
        print(f"{len(failed)} notebook(s) failed: {', '.join(failed)}", file=sys.stderr)
    return 0 if not failed and site_ok else 1


if __name__ == "__main__":
    sys.exit(main())
