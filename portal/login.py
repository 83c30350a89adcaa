"""Login with rate limiting of failed attempts (issue 5, docs/decisions/0011-staff-roles.md).

After `LOGIN_FAILURE_LIMIT` failed attempts for one username from one client address within
`LOGIN_FAILURE_WINDOW` seconds, that pair is refused — even with the right password — until the
window that began with the first failure has passed. The login form says how long to wait. A
successful login clears the count. The counts live in Django's cache (Redis in production, so
every web worker shares them), keyed by a hash of the username and address.

The dashboard login and the admin login use the same check.
"""

import hashlib
import math
import time

from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.core.cache import cache
from django.core.exceptions import ValidationError


def _now() -> float:
    return time.time()


def client_ip(request) -> str:
    """The client's address: REMOTE_ADDR, or the header a trusted proxy sets
    (`LOGIN_CLIENT_IP_HEADER`, e.g. HTTP_X_REAL_IP) when the portal runs behind one."""
    header = settings.LOGIN_CLIENT_IP_HEADER
    value = request.META.get(header, "") if header else ""
    return value.split(",")[0].strip() or request.META.get("REMOTE_ADDR", "") or "unknown"


def _keys(request, username: str) -> tuple[str, str]:
    digest = hashlib.sha256(f"{username.strip().casefold()}|{client_ip(request)}".encode()).hexdigest()
    return f"login-fail:{digest}:n", f"login-fail:{digest}:since"


def login_wait_seconds(request, username: str) -> int:
    """Seconds this username and address must wait before trying again; 0 if they may try now."""
    count_key, since_key = _keys(request, username)
    found = cache.get_many([count_key, since_key])
    if found.get(count_key, 0) < settings.LOGIN_FAILURE_LIMIT:
        return 0
    left = settings.LOGIN_FAILURE_WINDOW - (_now() - found.get(since_key, _now()))
    return max(0, math.ceil(left))


def login_failure_record(request, username: str) -> int:
    """Count one failed attempt; returns the count in the current window."""
    count_key, since_key = _keys(request, username)
    window = settings.LOGIN_FAILURE_WINDOW
    now = _now()
    since = cache.get(since_key)
    if since is not None and now - since >= window:  # the window has passed: start a new one
        cache.delete_many([count_key, since_key])
    cache.add(since_key, now, window)
    cache.add(count_key, 0, window)
    try:
        return cache.incr(count_key)
    except ValueError:  # expired between add and incr
        cache.set(count_key, 1, window)
        return 1


def login_failures_clear(request, username: str) -> None:
    cache.delete_many(list(_keys(request, username)))


class RateLimitedLoginMixin:
    """For an AuthenticationForm: refuse while the username+address pair is blocked, count failures."""

    rate_limit_message = "Too many failed login attempts. Wait {minutes} before trying again."

    def clean(self):
        username = self.cleaned_data.get("username")
        if not username or self.request is None:
            return super().clean()
        wait = login_wait_seconds(self.request, username)
        if wait:
            minutes = math.ceil(wait / 60)
            raise ValidationError(
                self.rate_limit_message.format(minutes=f"{minutes} minute{'s' if minutes != 1 else ''}"),
                code="rate_limited",
            )
        try:
            data = super().clean()
        except ValidationError:
            login_failure_record(self.request, username)
            raise
        login_failures_clear(self.request, username)
        return data


class RateLimitedAuthenticationForm(RateLimitedLoginMixin, AuthenticationForm):
    pass


class RateLimitedAdminAuthenticationForm(RateLimitedLoginMixin, AdminAuthenticationForm):
    pass


login_view = auth_views.LoginView.as_view(
    redirect_authenticated_user=True, authentication_form=RateLimitedAuthenticationForm
)
