"""Review listens to alignment: when an image's disagreements change, its adjudication status follows
(a new conflict reopens an adjudicated image; settling the last one finishes it)."""

from __future__ import annotations

from django.dispatch import receiver

from alignment.signals import disagreements_changed


@receiver(disagreements_changed, dispatch_uid="review.disagreements_changed")
def adjudication_status_refresh(sender, *, changes: dict[int, list[int] | None], **kwargs) -> None:
    from . import adjudication

    adjudication.studies_adjudication_refresh(changes=changes)
