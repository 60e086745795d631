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
# The lecture defaults and the CI scale of the cms_ad dataset (see course/ and tests/), and the
# held-out sample of lesson 01's quality test outside grading (the solution notebooks run by the
# tests; its public seed is mlhep.held_out.PUBLIC_SEEDS). A grading run makes its own, from a seed
# of its own, in the grader's cache.
LECTURE_EVENTS=100000
EXERCISE_EVENTS=10000
HELD_OUT_EVENTS=5000
HELD_OUT_SEED=2024
# The same for the reweighting dataset of lesson 02.
REWEIGHTING_LECTURE_EVENTS=200000
REWEIGHTING_EXERCISE_EVENTS=20000
REWEIGHTING_HELD_OUT_EVENTS=10000
REWEIGHTING_HELD_OUT_SEED=2025
# Lesson 03 (dijet_resonance): lecture, exercise / CI scale, and the public held-out sample.
RESONANCE_LECTURE_EVENTS=400000
RESONANCE_EXERCISE_EVENTS=40000
RESONANCE_HELD_OUT_EVENTS=40000
RESONANCE_HELD_OUT_SEED=2026

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

fetch() {  # fetch DATASET N [SEED]: N events from the offline source, into the cache
    "$VENV/bin/python" -m data_fetch fetch "$1" --source pythia --n-events "$2" --seed "${3:-0}"
}

fetch_ci_data() {  # what the exercises (their own defaults) and the tests (CI scale) need
    fetch cms_ad "$EXERCISE_EVENTS"
    fetch cms_ad "$HELD_OUT_EVENTS" "$HELD_OUT_SEED"
    fetch reweighting "$REWEIGHTING_EXERCISE_EVENTS"
    fetch reweighting "$REWEIGHTING_HELD_OUT_EVENTS" "$REWEIGHTING_HELD_OUT_SEED"
    fetch dijet_resonance "$RESONANCE_EXERCISE_EVENTS"
    fetch dijet_resonance "$RESONANCE_HELD_OUT_EVENTS" "$RESONANCE_HELD_OUT_SEED"
}

command=${1:-}
case "$command" in
    setup) setup ;;
    course)
        setup
        fetch_ci_data
        fetch cms_ad "$LECTURE_EVENTS"
        fetch reweighting "$REWEIGHTING_LECTURE_EVENTS"
        fetch dijet_resonance "$RESONANCE_LECTURE_EVENTS"
        "$VENV/bin/python" -m mlhep.build --source pythia ;;
    test)
        setup
        fetch_ci_data
        shift
        "$VENV/bin/python" -m pytest "$@" ;;
    lab)
        setup
        exec "$VENV/bin/jupyter" lab ;;
    *)
        sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'
        exit 2 ;;
esac
