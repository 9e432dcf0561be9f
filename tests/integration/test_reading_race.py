"""A region saved at the moment its reading is submitted: the two serialise on the assignment row, so a
submitted reading never holds a region that lacks the lexicon's required attributes (PostgreSQL: real
row locks, two connections, twelve rounds)."""

from __future__ import annotations

import threading

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, connections

from annotation import services
from annotation.models import Assignment, Region
from tests.factories import SQUARE, assignment_make, dataset_make, image_make, study_make, user_make

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
ROUNDS = 12


def _race(assignment: Assignment) -> dict[str, str]:
    """Create an incomplete region and submit the reading at once, each on its own connection."""
    outcome: dict[str, str] = {}
    start = threading.Barrier(2)

    def create():
        try:
            start.wait()
            services.region_create(image=assignment.image, author=assignment.annotator, assignment=assignment,
                                   shape="polygon", geometry=SQUARE, attributes={})
            outcome["create"] = "saved"
        except PermissionDenied:
            outcome["create"] = "closed"
        finally:
            connections.close_all()

    def submit():
        try:
            start.wait()
            services.assignment_submit(assignment=Assignment.objects.get(pk=assignment.pk))
            outcome["submit"] = "submitted"
        except ValidationError:
            outcome["submit"] = "refused"
        finally:
            connections.close_all()

    threads = [threading.Thread(target=create), threading.Thread(target=submit)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcome


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL")
def test_a_submitted_reading_never_holds_an_incomplete_region_however_the_race_falls():
    reader = user_make("racer")
    dataset = dataset_make(annotators_per_image=1)
    study = study_make(dataset)
    outcomes = []
    for position in range(ROUNDS):
        assignment = assignment_make(image_make(study, position=position), reader)
        outcome = _race(assignment)
        outcomes.append((outcome.get("create"), outcome.get("submit")))
        assignment.refresh_from_db()
        incomplete = Region.objects.filter(assignment=assignment, is_deleted=False).exists()
        # Either the region landed first and the submit saw it (refused), or the submit closed the
        # reading first and the region was refused; never both through.
        assert not (assignment.status == Assignment.Status.SUBMITTED and incomplete), outcomes
    assert set(outcomes) <= {("saved", "refused"), ("closed", "submitted")}, outcomes
