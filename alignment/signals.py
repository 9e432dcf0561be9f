"""What the alignment layer tells the layers above it, sent on commit.

- ``disagreements_changed(study_id, image_ids)``: an alignment run opened, changed or settled
  disagreements of these images (``image_ids is None``: a study-level one, which concerns every image
  of the study).
"""

from django.dispatch import Signal

disagreements_changed = Signal()
