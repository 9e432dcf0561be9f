# The two commands: `make demo` (run the app with demo data) and `make test` (the whole suite).
.PHONY: demo test test-quick setup lint seed clean

HOST ?= 127.0.0.1
PORT ?= 8000
STUDIES ?= 60
SEED ?= 7

# The demo runs in DEBUG mode (production is the default): demo key, eager tasks, SQLite, this machine only.
demo: export DEBUG = true
demo:
	bash scripts/setup.sh requirements.txt
	.venv/bin/python manage.py migrate --noinput
	.venv/bin/python manage.py seed_demo --studies $(STUDIES) --seed $(SEED) --if-empty
	.venv/bin/python manage.py align --dataset "Demo: breast and thyroid" --wait
	.venv/bin/python manage.py metrics_refresh --dataset "Demo: breast and thyroid"
	@echo ""
	@echo "  Sonoalign demo: http://$(HOST):$(PORT)/"
	@echo "  Logins (password 'sonoalign'): admin, reviewer, annotator1, annotator2"
	@echo ""
	.venv/bin/python manage.py runserver $(HOST):$(PORT)

test:
	bash scripts/test.sh

# Quick local run: SQLite, tasks in-process; integration tests are skipped.
test-quick:
	bash scripts/setup.sh requirements-dev.txt
	env -u DATABASE_URL -u CELERY_BROKER_URL .venv/bin/python -m pytest -m "not integration" -q

lint:
	.venv/bin/ruff check .
	.venv/bin/lint-imports

clean:
	rm -rf .venv node_modules static/vendor staticfiles artifacts db.sqlite3 media
