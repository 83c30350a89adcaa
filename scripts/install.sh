#!/usr/bin/env bash
# Create the virtualenv with Python 3.12 when it is missing (or built on another Python), then
# install the project with every package pinned by requirements.lock. (A plain, non-editable
# install: pyproject.toml lists no importable packages, the code runs from the checkout.)
#
# Usage: scripts/install.sh [runtime|test]
#   runtime  the portal's own dependencies (make run)
#   test     plus the test extras: pytest, hypothesis, playwright, ... (make test)
# Environment: PYTHON (interpreter to build the venv from, default python3.12), VENV (default .venv).
set -euo pipefail

want="${1:-runtime}"
case "$want" in runtime | test) ;; *) echo "usage: $0 [runtime|test]" >&2; exit 2 ;; esac

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.12}"
VENV="${VENV:-.venv}"
LOCK=requirements.lock

is_312() { "$1" -c 'import sys; raise SystemExit(sys.version_info[:2] != (3, 12))' 2>/dev/null; }

if ! is_312 "$VENV/bin/python"; then
  if ! command -v "$PYTHON" >/dev/null 2>&1 || ! is_312 "$PYTHON"; then
    echo "error: '$PYTHON' is not a Python 3.12 interpreter." >&2
    echo "Install Python 3.12 (for example 'pyenv install 3.12'; .python-version selects it)" >&2
    echo "or point PYTHON at one: make PYTHON=/path/to/python3.12 ..." >&2
    exit 1
  fi
  echo "==> creating $VENV with $("$PYTHON" --version)"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
fi

# The stamp records what was installed from which pyproject.toml + lock; skip when unchanged.
digest="$(cat pyproject.toml "$LOCK" | sha256sum | cut -c1-16)"
stamp="$VENV/.installed"
if [ -f "$stamp" ]; then
  read -r have_digest have_kind <"$stamp" || true
  if [ "${have_digest:-}" = "$digest" ] && { [ "$want" = runtime ] || [ "${have_kind:-}" = test ]; }; then
    exit 0
  fi
fi

spec="."
[ "$want" = test ] && spec=".[test]"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check)

echo "==> installing $spec into $VENV (constraints: $LOCK)"
"${pip[@]}" install --quiet --constraint "$LOCK" pip
"${pip[@]}" install --quiet --constraint "$LOCK" "$spec"
"${pip[@]}" check
echo "$digest $want" >"$stamp"
