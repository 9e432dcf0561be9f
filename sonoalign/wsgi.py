"""WSGI entry point (gunicorn/uwsgi: ``sonoalign.wsgi:application``)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sonoalign.settings")
application = get_wsgi_application()
