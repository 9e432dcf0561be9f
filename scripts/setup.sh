#!/usr/bin/env bash
# Creates .venv and installs the pinned Python and npm packages; copies the browser libraries into
# static/vendor/. Safe to re-run: pip and npm skip what is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
requirements="${1:-requirements.txt}"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$requirements"

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
npm run --silent vendor
