#!/usr/bin/env bash
# The course in one command.
#   bash run.sh course   set up, generate the data (offline default), regenerate exercises/,
#                        run every lecture and solution notebook at lecture scale -> build/
#   bash run.sh test     set up, generate the CI-scale data, run the test suite
#   bash run.sh lab      set up and open JupyterLab on the course
#   bash run.sh setup    only create .venv (Python 3.11) and register the `mlhep` kernel
set -euo pipefail
cd "$(dirname "$0")"

VENV=.venv

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

setup() {
    local python stamp want
    install_bubblewrap
    install_chromium
    python=$(find_python)
    # An environment without a working pip is one whose creation was interrupted: start it again.
    if ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
        rm -rf "$VENV"
        "$python" -m venv "$VENV"
    fi
    # Reinstall only when the pinned requirements changed.
    stamp="$VENV/.installed-from"
    want=$(cat pyproject.toml | sha256sum | cut -d' ' -f1)
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        echo "== installing the course environment into $VENV (a few minutes the first time)"
        "$VENV/bin/python" -m pip install --quiet --upgrade pip
        "$VENV/bin/python" -m pip install --quiet -e .
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
    lab)
        setup
        exec "$VENV/bin/jupyter" lab ;;
    *)
        sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'
        exit 2 ;;
esac
