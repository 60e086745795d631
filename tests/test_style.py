"""The course's code and notebooks pass ruff (configuration in pyproject.toml)."""

import subprocess
import sys

from mlhep.notebooks import REPO


def test_ruff_is_clean():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--output-format", "concise", "."],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, f"ruff found problems (fix with `ruff check --fix .`):\n{result.stdout}"
