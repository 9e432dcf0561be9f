"""The interface language: the switch in the header, and the choice that follows a user.

Django's ``LocaleMiddleware`` picks the language from the language cookie, else the browser's
Accept-Language. A signed-in user's saved preference (``annotation.models.UserPreference``) comes first,
so the language they chose on one machine is the one they get after logging in on another. The
preference is read once per session (a login starts a new session), not on every request.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import translation
from django.views.decorators.http import require_POST
from django.views.i18n import set_language

from annotation import selectors, services

SESSION_KEY = "interface_language"


def _preferred(request) -> str:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return ""
    if SESSION_KEY not in request.session:
        request.session[SESSION_KEY] = selectors.user_language(user=user)
    language = request.session[SESSION_KEY]
    return language if language in dict(settings.LANGUAGES) else ""


class UserLanguageMiddleware:
    """Activate the signed-in user's own language and keep the language cookie in step with it (so the
    login page after a logout speaks it too)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        language = _preferred(request)
        if language:
            translation.activate(language)
            request.LANGUAGE_CODE = language
        response = self.get_response(request)
        if language and request.COOKIES.get(settings.LANGUAGE_COOKIE_NAME) != language:
            response.set_cookie(
                settings.LANGUAGE_COOKIE_NAME, language, max_age=settings.LANGUAGE_COOKIE_AGE,
                path=settings.LANGUAGE_COOKIE_PATH, domain=settings.LANGUAGE_COOKIE_DOMAIN,
                secure=settings.LANGUAGE_COOKIE_SECURE, httponly=settings.LANGUAGE_COOKIE_HTTPONLY,
                samesite=settings.LANGUAGE_COOKIE_SAMESITE,
            )
        return response


@require_POST
def language_switch(request):
    """The header's switch: Django's ``set_language`` (cookie, then back to ``next``), and for a
    signed-in user the saved preference as well."""
    response = set_language(request)
    language = request.POST.get("language", "")
    if request.user.is_authenticated and language in dict(settings.LANGUAGES):
        try:
            services.user_language_set(user=request.user, language=language)
        except ValidationError:
            return response
        request.session[SESSION_KEY] = language
    return response
