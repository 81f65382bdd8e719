"""ASGI entry point, for servers that hold many long-polling agents without a thread each."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
# No persistent database connections under ASGI (see DATABASES in dashboard/settings.py).
os.environ.setdefault("DATABASE_CONN_MAX_AGE", "0")
application = get_asgi_application()
