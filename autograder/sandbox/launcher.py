"""Entry point of the grading kernelspec: ``python -m autograder.sandbox.launcher CONNECTION_FILE ...``.

Join the student's cgroups that the grader's ``KernelBox`` names in the environment (or set rlimits
where there are none), then become ``bwrap ... ipykernel_launcher``. It imports next to nothing,
so that a kernel starts fast.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from .bwrap import bwrap_command
from .limits import enter_limits


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m autograder.sandbox.launcher")
    parser.add_argument("connection_file", type=Path)
    parser.add_argument("--data", type=Path, help="the data cache (default: data_fetch's)")
    parser.add_argument("--font-cache", type=Path, help="matplotlib's font list (see write_font_cache)")
    args = parser.parse_args(argv)
    empty, writer = os.pipe()  # read to its end, an empty file: the sandbox's autograder/__init__.py
    os.close(writer)
    os.set_inheritable(empty, True)
    command = bwrap_command(
        args.connection_file, data_dir=args.data, font_cache=args.font_cache, empty_file_fd=empty
    )
    enter_limits(os.environ)  # last: bwrap and all it starts inherit the cgroups and rlimits
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
