"""Alignment listens to annotation: a changed report or a submitted reading schedules the study's
parsing and alignment (the signals arrive after commit, so the job sees the data)."""

from __future__ import annotations

from django.dispatch import receiver

from annotation.signals import reading_submitted, report_changed


@receiver(report_changed, dispatch_uid="alignment.report_changed")
@receiver(reading_submitted, dispatch_uid="alignment.reading_submitted")
def study_align_schedule(sender, *, study_id: int, **kwargs) -> None:
    from .tasks import study_align

    study_align.delay(study_id)
