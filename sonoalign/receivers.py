"""Logins and failed logins in the audit trail (``annotation.AuditEvent``), next to the dataset changes,
exports and adjudications the services record. Django's auth signals are the only door every way in
shares (the login form, the admin, API tokens), hence receivers here rather than a call in each view.
Recorded: the username and the client's address; never the password offered."""

from __future__ import annotations

from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.dispatch import receiver

from annotation.services import audit_record

from .authentication import client_ip

USERNAME_MAX = 150


def _address(request) -> str:
    return (client_ip(request) or "") if request is not None and hasattr(request, "META") else ""


@receiver(user_logged_in, dispatch_uid="sonoalign.audit_login")
def audit_login(sender, request, user, **kwargs) -> None:
    audit_record(actor=user, action="auth.login", detail={"username": user.get_username(), "address": _address(request)})


@receiver(user_login_failed, dispatch_uid="sonoalign.audit_login_failed")
def audit_login_failed(sender, credentials, request=None, **kwargs) -> None:
    username = str((credentials or {}).get("username") or "")[:USERNAME_MAX]
    audit_record(actor=None, action="auth.login_failed", detail={
        "username": username, "address": _address(request), "method": "password" if username else "token"})
