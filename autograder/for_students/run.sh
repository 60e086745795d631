#!/usr/bin/env bash
# The course on your machine.
#   bash run.sh setup      create .venv (Python 3.11) from requirements.lock, register the `mlhep` kernel
#   bash run.sh data [NN]  set up, then produce the data of every lesson (or of lesson NN) once, offline
#   bash run.sh lab        set up and open JupyterLab on the course
set -euo pipefail

VENV=.venv
# The installer of the lock file (from PyPI; pip installs it into the environment).
UV_VERSION=0.13.9
# nbgrader's instructor tools, hidden from this environment's JupyterLab: creating assignments, the
# formgrader and the course list. Validate stays, and the assignment list, to fetch and submit
# through an nbgrader exchange where the course has one.
INSTRUCTOR_LAB_PLUGINS=(
    @jupyter/nbgrader:create-assignment
    @jupyter/nbgrader:formgrader
    @jupyter/nbgrader:course-list
)
INSTRUCTOR_SERVER_EXTENSIONS=(
    nbgrader.server_extensions.formgrader
    nbgrader.server_extensions.course_list
)

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

install_iverilog() {  # lesson 06 simulates the Verilog it generates in Icarus Verilog
    local sudo=""
    command -v iverilog >/dev/null 2>&1 && return 0
    local without_it="lesson 06 skips its Verilog simulation until it is (Debian/Ubuntu: sudo apt-get install iverilog)"
    if [ "$(id -u)" != 0 ]; then
        if sudo -n true 2>/dev/null; then sudo="sudo -n"; else
            echo "warning: iverilog is not installed and installing it needs root; $without_it" >&2
            return 0
        fi
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "warning: install iverilog with your package manager; $without_it" >&2
        return 0
    fi
    echo "== installing iverilog (the HDL simulator of lesson 06)"
    local install="$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends iverilog"
    $install >/dev/null || { $sudo apt-get update -q >/dev/null && $install >/dev/null; } ||
        echo "warning: could not install iverilog; $without_it" >&2
}

hide_instructor_tools() {  # for everyone who uses this environment (its sys-prefix configuration)
    "$VENV/bin/python" -m jupyterlab.labextensions disable --level=sys_prefix --log-level=WARN \
        "${INSTRUCTOR_LAB_PLUGINS[@]}"
    # Locked: JupyterLab's plugin manager cannot turn them on again.
    "$VENV/bin/python" -m jupyterlab.labextensions lock --level=sys_prefix --log-level=WARN \
        "${INSTRUCTOR_LAB_PLUGINS[@]}"
    "$VENV/bin/python" -m jupyter_server.extension.serverextension disable --sys-prefix --log-level=WARN \
        "${INSTRUCTOR_SERVER_EXTENSIONS[@]}" >/dev/null
}

setup() {
    local python stamp want
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
        # da4ml (lesson 06) compiles its numba functions on first use, a minute or more: once here.
        echo "== compiling da4ml's numba functions (once, about a minute and a half)"
        "$VENV/bin/python" -c "from mlhep.fpga import warm_up; warm_up()" >/dev/null 2>&1 ||
            echo "warning: da4ml's warm-up failed; lesson 06 will compile it on first use" >&2
        hide_instructor_tools
        echo "$want" > "$stamp"
    fi
    "$VENV/bin/python" -m ipykernel install --sys-prefix --name mlhep \
        --display-name "Python (mlhep course)" >/dev/null
}

main() {
    cd "$(dirname "${BASH_SOURCE[0]}")"
    local command=${1:-}
    case "$command" in
        setup) setup ;;
        data)
            setup
            if [ $# -gt 1 ]; then
                "$VENV/bin/python" -m data_fetch fetch-course --scale lecture --source pythia --lesson "$2"
            else
                "$VENV/bin/python" -m data_fetch fetch-course --scale lecture --source pythia
            fi ;;
        lab)
            setup
            exec "$VENV/bin/jupyter" lab ;;
        *)
            sed -n '2,5p' "${BASH_SOURCE[0]##*/}" | sed 's/^# \{0,1\}//'
            exit 2 ;;
    esac
}

# Sourced, the script only defines its functions and settings (a test hides the tools of its own environment).
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    main "$@"
fi
