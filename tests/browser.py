"""Headless Chromium for the tests that look at pages as a browser does (the formgrader, the feedback
pages, the course website). ``bash run.sh setup`` installs Chromium; without it these tests are skipped."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import psutil
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")  # Debian's and Ubuntu's names
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (`bash run.sh setup` installs it)"
)
PAGE_TIMEOUT = 120  # one page takes seconds; leave room for a busy machine


def dump_dom(url: str, profile: Path, *flags: str) -> str:
    """The page's DOM after its scripts ran (and their requests returned), as Chromium sees it.

    ``profile`` is a fresh user-data folder; ``flags`` are added to Chromium's. Fails if Chromium fails
    or leaves a process of that profile running.
    """
    # --no-sandbox: Chromium's own sandbox needs user namespaces, which root and some CI images lack;
    # it only ever loads pages the tests serve or write themselves.
    result = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
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
    left = [
        process
        for process in psutil.process_iter(["cmdline"])
        if str(profile) in " ".join(process.info["cmdline"] or [])
    ]
    _, alive = psutil.wait_procs(left, timeout=10)
    assert not alive, f"Chromium processes left running: {alive}"
    return result.stdout
