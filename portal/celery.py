import os

from celery import Celery
from celery.signals import beat_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@beat_init.connect
def _one_beat(sender, **kwargs):
    """A second beat would schedule every job twice: it stops at start instead (decision 0021)."""
    from portal.jobs import beat_lock_take  # lazy: portal/__init__ loads this module before settings and apps

    if beat_lock_take() is None:
        raise SystemExit("another celery beat is running for this database (its lock is held): exiting")
