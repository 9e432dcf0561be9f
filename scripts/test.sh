#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what the tests need, starts PostgreSQL and Redis if
# they are down, lints, checks migrations, then runs pytest against PostgreSQL with a real Celery
# worker on Redis and real Chromium. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh requirements-dev.txt
bash scripts/services.sh

export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/sonoalign}"
# The checks below connect to the database itself (pytest makes its own test_ database).
case "$DATABASE_URL" in
  postgres://postgres@127.0.0.1:5432/sonoalign)
    psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='sonoalign'" | grep -q 1 \
      || createdb -h 127.0.0.1 -U postgres sonoalign ;;
esac
export CELERY_BROKER_URL="${CELERY_BROKER_URL:-redis://127.0.0.1:6379/1}"
# The checks below and the tests run in DEBUG mode; production (DEBUG unset) would require a real key.
export DEBUG="${DEBUG:-true}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/2}"
export ARTIFACTS_DIR="${ARTIFACTS_DIR:-$PWD/artifacts}"
mkdir -p "$ARTIFACTS_DIR"

echo "== lint (ruff, import-linter layers)"
make --no-print-directory lint
echo "== django checks"
.venv/bin/python manage.py check --fail-level WARNING
.venv/bin/python manage.py makemigrations --check --dry-run
echo "== pytest"
.venv/bin/python -m pytest "$@"
