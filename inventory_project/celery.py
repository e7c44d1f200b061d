"""The Celery app. Configuration comes from Django settings (the CELERY_ namespace)."""

import os

from celery import Celery

# As wsgi.py: a worker or beat started without a settings module is a deployment's.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "inventory_project.settings.production")

app = Celery("inventory_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
