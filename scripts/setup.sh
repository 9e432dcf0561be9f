#!/usr/bin/env bash
# Creates .venv and installs the pinned Python and npm packages; copies the browser libraries into
# static/vendor/; compiles the interface translations (locale/*.po -> .mo; needs GNU gettext's msgfmt,
# installed from Debian's gettext package where missing). Safe to re-run: pip and npm skip what is
# already installed.
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

if ! command -v msgfmt >/dev/null 2>&1; then
  as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq gettext >/dev/null
fi
# Without DJANGO_SETTINGS_MODULE, compilemessages needs no settings (so no secret key): it compiles the
# locale/ folders it finds below here.
env -u DJANGO_SETTINGS_MODULE .venv/bin/django-admin compilemessages --ignore=.venv --ignore=node_modules >/dev/null
