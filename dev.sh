#!/usr/bin/env bash
# ConceptLens developer entry point.
#   ./dev.sh start   install (first run) and serve the dashboard on http://127.0.0.1:8000
#   ./dev.sh test    install (first run) and run lint, type checks and all tests
set -euo pipefail
cd "$(dirname "$0")"
# The service (backend/, worker/) runs from this checkout; only the library is installed.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
VENV=${CONCEPTLENS_VENV:-.venv}
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3

install() {
    if [ ! -x "$VENV/bin/python" ]; then
        "$PY" -m venv "$VENV"
    fi
    local stamp="$VENV/.installed-$(sha1sum pyproject.toml | cut -c1-12)"
    if [ ! -f "$stamp" ]; then
        "$VENV/bin/pip" install -q --upgrade pip
        # torch first, pinned: 2.13.0 is a local CPU wheel; any other spec pulls CUDA.
        "$VENV/bin/pip" install -q torch==2.13.0
        "$VENV/bin/pip" install -q -e ".[service,dev]"
        touch "$stamp"
    fi
}

case "${1:-}" in
    install) install ;;
    start)
        install
        shift
        exec "$VENV/bin/conceptlens" serve "$@"
        ;;
    test)
        install
        shift
        "$VENV/bin/ruff" check .
        "$VENV/bin/ruff" format --check .
        "$VENV/bin/mypy"
        exec "$VENV/bin/pytest" -q "$@"
        ;;
    *)
        echo "usage: ./dev.sh {start|test|install}" >&2
        exit 2
        ;;
esac
