"""ASGI entry point (uvicorn/daphne: ``sonoalign.asgi:application``)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sonoalign.settings")
application = get_asgi_application()
