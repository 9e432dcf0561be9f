"""Password rules beyond Django's own validators."""

from __future__ import annotations

from django.core.exceptions import ValidationError


class StaffMinimumLengthValidator:
    """Staff and superusers reach the admin, exports and every dataset, so their passwords must be longer
    than a reader's (``MinimumLengthValidator`` sets the floor for everyone).

    Django's validators see the user the password is for; ``createsuperuser`` passes an unsaved user
    without its flags, so this check cannot see a superuser there — set staff passwords through the admin
    or ``changepassword``, which do pass the real user.
    """

    def __init__(self, min_length: int = 12):
        self.min_length = min_length

    def validate(self, password: str, user=None) -> None:
        if user is None or not (getattr(user, "is_staff", False) or getattr(user, "is_superuser", False)):
            return
        if len(password) < self.min_length:
            raise ValidationError(
                f"Staff passwords must contain at least {self.min_length} characters.",
                code="password_too_short_for_staff",
                params={"min_length": self.min_length},
            )

    def get_help_text(self) -> str:
        return f"Staff passwords must contain at least {self.min_length} characters."
