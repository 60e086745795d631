#!/usr/bin/env bash
# The course in one command.
#   bash run.sh course   set up, generate the data (offline default), regenerate exercises/,
#                        run every lecture and solution notebook at lecture scale -> build/
#   bash run.sh test     set up, generate the CI-scale data, run the test suite
#   bash run.sh lab      set up and open JupyterLab on the course
#   bash run.sh setup    only create .venv (Python 3.11) from requirements.lock, register the `mlhep` kernel
#   bash run.sh lock     after a change of pins in pyproject.toml: resolve requirements.lock again
set -euo pipefail
cd "$(dirname "$0")"

VENV=.venv
# The installer of the lock file (from PyPI; pip installs it into the environment).
UV_VERSION=0.13.9
# The lock is resolved for the machines the course runs on: Linux x86-64 with Python 3.11.
LOCK_PLATFORM=x86_64-manylinux_2_28

find_python() {
    for candidate in "${PYTHON:-}" python3.11 python3 python; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
           "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
            echo "$candidate"; return 0
        fi
    done
    echo "error: the course needs Python 3.11 (set PYTHON=/path/to/python3.11)" >&2
    return 1
}

apt_install() {  # apt_install PACKAGE WHAT WITHOUT_IT: a Debian package, as root or with sudo -n; else a warning
    local package=$1 what=$2 without_it=$3 sudo=""
    if [ "$(id -u)" != 0 ]; then
        if sudo -n true 2>/dev/null; then sudo="sudo -n"; else
            echo "warning: $package is not installed and installing it needs root; $without_it" \
                 "(Debian/Ubuntu: sudo apt-get install $package)" >&2
            return 0
        fi
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "warning: install $package with your package manager; $without_it" >&2
        return 0
    fi
    echo "== installing $package ($what)"
    # Without recommends: the course needs the program, not the printing or mDNS daemons a desktop wants.
    local install="$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $package"
    $install >/dev/null || { $sudo apt-get update -q >/dev/null && $install >/dev/null; } ||
        echo "warning: could not install $package; $without_it" >&2
}

install_bubblewrap() {  # the grader runs students' kernels in bubblewrap (autograder/sandbox.py)
    command -v bwrap >/dev/null 2>&1 ||
        apt_install bubblewrap "the grading sandbox" "the grader will refuse to grade until it is"
}

install_chromium() {  # tests/test_formgrader.py opens nbgrader's formgrader in headless Chromium
    { command -v chromium || command -v chromium-browser; } >/dev/null 2>&1 ||
        apt_install chromium "the formgrader test's headless browser" "the formgrader test is skipped until it is"
}

install_iverilog() {  # mlhep/fpga.py simulates the generated Verilog in Icarus Verilog (tests/test_fpga.py)
    command -v iverilog >/dev/null 2>&1 ||
        apt_install iverilog "the HDL simulator of the FPGA lesson" "the Verilog simulation is skipped until it is"
}

setup() {
    local python stamp want
    install_bubblewrap
    install_chromium
    install_iverilog
    python=$(find_python)
    # An environment without a working pip is one whose creation was interrupted: start it again.
    if ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
        rm -rf "$VENV"
        "$python" -m venv "$VENV"
    fi
    # Reinstall only when the pins or the lock changed. The lock pins the whole environment, with the
    # hash of every file, and uv refuses a file whose hash differs.
    stamp="$VENV/.installed-from"
    want=$(cat pyproject.toml requirements.lock | sha256sum | cut -d' ' -f1)
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        echo "== installing the course environment into $VENV from requirements.lock (a few minutes the first time)"
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
        "$VENV/bin/uv" pip install --quiet --python "$VENV/bin/python" --require-hashes -r requirements.lock
        "$VENV/bin/uv" pip install --quiet --python "$VENV/bin/python" --no-deps -e .
        # da4ml (lesson 06) compiles its numba functions on first use, a minute or more: once here, cached in
        # the environment, instead of in a lesson, a test or every notebook the grader runs.
        echo "== compiling da4ml's numba functions (once, about a minute and a half)"
        "$VENV/bin/python" -c "from mlhep.fpga import warm_up; warm_up()" >/dev/null 2>&1 ||
            echo "warning: da4ml's warm-up failed; lesson 06 will compile it on first use" >&2
        echo "$want" > "$stamp"
    fi
    "$VENV/bin/python" -m ipykernel install --sys-prefix --name mlhep \
        --display-name "Python (mlhep course)" >/dev/null
}

fetch_course() {  # fetch_course SCALE: every sample of the manifest (data_fetch/manifest.py) at SCALE
    "$VENV/bin/python" -m data_fetch fetch-course --scale "$1" --source pythia
}

command=${1:-}
case "$command" in
    setup) setup ;;
    course)
        setup
        fetch_course lecture
        "$VENV/bin/python" -m mlhep.build --source pythia ;;
    test)
        setup
        fetch_course ci
        shift
        "$VENV/bin/python" -m pytest "$@" ;;
    lock)
        setup
        "$VENV/bin/uv" pip compile pyproject.toml --quiet --generate-hashes --python-version 3.11 \
            --python-platform "$LOCK_PLATFORM" --custom-compile-command "bash run.sh lock" -o requirements.lock
        echo "requirements.lock resolved again; run \`bash run.sh setup\` to install it" ;;
    lab)
        setup
        exec "$VENV/bin/jupyter" lab ;;
    *)
        sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
        exit 2 ;;
esac
