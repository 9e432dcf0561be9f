"""What the annotation layer tells the layers above it. Sent once the transaction that caused them
commits, so a receiver (which may queue a job) always sees the data; annotation never imports its
listeners.

- ``report_changed(study_id)``: a study's report was created or its text or language changed.
- ``reading_submitted(study_id, image_id, assignment_id)``: a reader submitted their reading of an image.
"""

from __future__ import annotations

from django.db import transaction
from django.dispatch import Signal

report_changed = Signal()
reading_submitted = Signal()


def send_on_commit(signal: Signal, sender: type, **kwargs) -> None:
    """Send ``signal`` when the current transaction commits (at once outside a transaction)."""
    transaction.on_commit(lambda: signal.send(sender=sender, **kwargs))
