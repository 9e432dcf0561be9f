"""The Celery application.

With no ``CELERY_BROKER_URL`` (the embedded demo) tasks run eagerly in the calling process; settings.py
sets ``CELERY_TASK_ALWAYS_EAGER`` for that case, so callers never need to know which mode is active.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sonoalign.settings")

app = Celery("sonoalign")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
