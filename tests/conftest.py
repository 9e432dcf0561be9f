"""Shared test fixtures: users and datasets built by factories, and a real Celery worker process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def media_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(autouse=True)
def _isolated_media_and_eager_tasks(request, settings, media_root):
    """Files go to a per-session folder. Tasks run eagerly in-process unless the test uses the real
    worker, so no unit test leaves messages in the broker for a later worker to pick up."""
    settings.MEDIA_ROOT = str(media_root)
    from sonoalign.celery import app

    eager = "celery_worker_process" not in request.fixturenames
    previous = app.conf.task_always_eager
    app.conf.task_always_eager = eager
    yield
    app.conf.task_always_eager = previous


@pytest.fixture(autouse=True)
def _default_language():
    """Each test starts in the default language: a request in Chinese activates it for the thread, and
    it would otherwise leak into the next test's service messages."""
    from django.conf import settings
    from django.utils import translation

    translation.activate(settings.LANGUAGE_CODE)
    yield
    translation.deactivate()


class WorkerProcess:
    """A ``celery worker`` subprocess on its own queues (``queue``: comma-separated), against the test
    database."""

    def __init__(self, *, env: dict[str, str], queue: str, log_path: Path):
        self.env, self.queue, self.log_path = env, queue, log_path
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self, concurrency: int = 2) -> None:
        from sonoalign.celery import app

        self.starts += 1
        name = f"test{self.starts}-{os.getpid()}@localhost"
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "sonoalign", "worker", "-l", "INFO", "-c", str(concurrency),
             "-Q", self.queue, "-n", name, "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"celery worker exited early; see {self.log_path}")
            if app.control.ping(destination=[name], timeout=0.5):
                return
        raise RuntimeError(f"celery worker did not answer within 60 s; see {self.log_path}")

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and its pool children), as a crash would."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(scope="session")
def _worker_environment(django_db_setup, django_db_blocker, media_root, tmp_path_factory):
    from django.db import connection

    broker = os.environ.get("CELERY_BROKER_URL")
    if not broker:
        pytest.skip("needs CELERY_BROKER_URL (Redis); `make test` and CI start Redis and set it")
    with django_db_blocker.unblock():
        if connection.vendor != "postgresql":
            pytest.skip("needs PostgreSQL (DATABASE_URL); `make test` and CI set it")
        db = connection.settings_dict
    url = f"postgres://{db['USER']}:{db.get('PASSWORD') or ''}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    from django.conf import settings

    queue = f"sonoalign-test-{os.getpid()}"
    # The default queue and every queue CELERY_TASK_ROUTES sends to (prefixed per run by tests/settings.py).
    queues = [queue, *sorted({route["queue"] for route in settings.CELERY_TASK_ROUTES.values()})]
    env = {**os.environ, "DATABASE_URL": url, "CELERY_BROKER_URL": broker, "CELERY_QUEUE": queue,
           "MEDIA_ROOT": str(media_root), "DJANGO_SETTINGS_MODULE": "sonoalign.settings",
           "PYTHONUNBUFFERED": "1",
           # Short enough that a test can kill a worker and see its work redelivered and re-claimed.
           "CELERY_VISIBILITY_TIMEOUT": "8", "ALIGNMENT_CLAIM_TIMEOUT": "5"}
    log_dir = Path(os.environ.get("ARTIFACTS_DIR", ROOT / "artifacts"))
    log_dir.mkdir(parents=True, exist_ok=True)
    return {"env": env, "queue": ",".join(queues), "log_path": log_dir / "celery-worker.log"}


@pytest.fixture
def celery_worker_process(_worker_environment, transactional_db):
    """A running worker for one test (fresh each test, so a test that kills it harms no other). Tests
    using it see only committed data, hence ``transactional_db``."""
    from sonoalign.celery import app

    queues = _worker_environment["queue"].split(",")
    app.conf.task_default_queue = queues[0]
    with app.connection_for_write() as conn:
        for queue in queues:
            conn.default_channel.queue_purge(queue)
    worker = WorkerProcess(**_worker_environment)
    worker.start()
    yield worker
    worker.stop()
