"""Settings of the example project: Django and corequeue share one PostgreSQL database.

DATABASE_URL names it (a SQLAlchemy URL, ``postgresql+psycopg://user@host:port/name``); Django's
DATABASES and corequeue's ``database_url`` (COREQUEUE_DATABASE_URL) are both derived from it.
"""

import os
from urllib.parse import urlsplit

DATABASE_URL = os.environ.get(
    "DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/django_example"
)
os.environ.setdefault("COREQUEUE_DATABASE_URL", DATABASE_URL)
_url = urlsplit(DATABASE_URL)

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "an-example-key-not-for-production")
DEBUG = False
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
USE_TZ = True
ROOT_URLCONF = "mysite.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "orders",
]
try:  # Django 6 has django.tasks; Django 5.2 gets the same API from the django-tasks backport
    import django.tasks  # noqa: F401
except ImportError:
    INSTALLED_APPS.append("django_tasks")

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _url.path.lstrip("/"),
        "USER": _url.username or "",
        "PASSWORD": _url.password or "",
        "HOST": _url.hostname or "",
        "PORT": str(_url.port or ""),
    }
}

TASKS = {
    "default": {
        "BACKEND": "corequeue.contrib.django.CorequeueBackend",
        "QUEUES": [],  # any queue name
        # corequeue's tables are in Django's "default" database: an enqueue inside
        # transaction.atomic() commits or rolls back with the application's own writes.
        "OPTIONS": {"DATABASE": "default"},
    }
}
