"""What the alignment layer tells the layers above it, sent on commit.

- ``disagreements_changed(changes)``: an alignment run opened, changed or settled disagreements;
  ``changes`` maps each study concerned to the ids of its images concerned (None: a study-level
  change, which concerns every image of the study). One signal for all the studies aligned together.
"""

from django.dispatch import Signal

disagreements_changed = Signal()
