#!/usr/bin/env bash
# Re-resolve pyproject.toml (with test extras) in a throwaway Python 3.12 venv and write every
# installed version to requirements.lock. Run after changing a dependency; commit the result.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.12}"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

"$PYTHON" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$tmp/venv/bin/python" -m pip install --quiet --disable-pip-version-check --editable ".[test]"
{
  echo "# Every package installed by 'pip install -e .[test]' on Python 3.12, pinned."
  echo "# Used as constraints (pip install -c requirements.lock). Regenerate: make lock"
  "$tmp/venv/bin/python" -m pip freeze --all --exclude-editable | grep -v '^#'
} >requirements.lock
echo "requirements.lock: $(grep -vc '^#' requirements.lock) packages"
