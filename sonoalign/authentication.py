"""Login lockout (django-axes) applied to the login form, the admin and API tokens alike.

Failures are counted per username and, separately, per client address; either one past
``AXES_FAILURE_LIMIT`` is refused until ``AXES_COOLOFF_TIME`` has passed.
"""

from __future__ import annotations

from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_client_username
from django.conf import settings
from django.contrib.auth.signals import user_login_failed
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication


def lockout_parameters(request_or_attempt, credentials: dict | None = None) -> list[str]:
    """Count per username only when one was given: an API token names nobody, and counting all of those
    under one empty username would let one client lock every other out."""
    if hasattr(request_or_attempt, "META"):
        username = get_client_username(request_or_attempt, credentials)
    else:  # a stored access attempt
        username = getattr(request_or_attempt, "username", None)
    return ["ip_address", "username"] if username else ["ip_address"]


def client_ip(request) -> str | None:
    """The client's address: the socket's, or, behind ``TRUSTED_PROXY_COUNT`` proxies, the address the
    outermost trusted proxy saw (entries further left are set by the client and are not trusted)."""
    proxies = getattr(settings, "TRUSTED_PROXY_COUNT", 0)
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if proxies and forwarded:
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        if hops:
            return hops[-min(proxies, len(hops))]
    return request.META.get("REMOTE_ADDR")


class LockoutTokenAuthentication(TokenAuthentication):
    """``Authorization: Token …`` under the login lockout: a wrong token counts as a failed login from the
    client's address, and an address that is locked out is refused before any token is looked up."""

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header.lower().startswith(f"{self.keyword.lower()} "):
            return None  # no token offered: another scheme (the session) decides
        django_request = request._request
        if AxesProxyHandler.is_locked(django_request, {}):
            raise exceptions.Throttled(detail="Too many failed attempts from this address; try again later.")
        try:
            return super().authenticate(request)
        except exceptions.AuthenticationFailed:
            user_login_failed.send(sender=type(self), credentials={}, request=django_request)
            raise
