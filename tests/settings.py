"""Settings for the test run: the project's settings in DEBUG mode, which production leaves off.

Set here, before ``sonoalign.settings`` is read, because pytest-django imports the settings before any
conftest runs; the Celery worker and other subprocesses the tests start inherit it from the environment.
Tests of production behaviour start their own process with their own environment.
"""

import os

if not os.environ.get("DEBUG"):
    os.environ["DEBUG"] = "true"
# Each run routes tasks to queues of its own (tests/conftest.py's worker consumes them all), so runs
# sharing a Redis never take each other's tasks.
os.environ.setdefault("CELERY_QUEUE_PREFIX", f"sonoalign-test-{os.getpid()}-")

from sonoalign.settings import *  # noqa: E402, F403
