import pytest
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections


@pytest.fixture
def app(settings):
    """Django's WSGI app for schemathesis: requests run in the test's transaction."""
    settings.API_RATE_LIMIT = "100000/minute"  # the run makes far more calls than a client may
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "localhost"]
    # as Django's test client does: a request must not close the test's database connection
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield get_wsgi_application()
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)
