"""Rules the database itself enforces, whatever door the data comes through."""

import pytest
from django.db import IntegrityError, transaction

from annotation import services
from annotation.models import Assignment, Dataset, Image, Region
from tests.factories import assignment_make, dataset_make, image_make, study_make, user_make

pytestmark = pytest.mark.django_db


def test_an_image_file_is_stored_at_most_once_per_study():
    study = study_make(dataset_make())
    image = image_make(study)
    with pytest.raises(IntegrityError), transaction.atomic():
        Image.objects.create(study=study, width=10, height=10, sha256=image.sha256, file=image.file.name)
    # …but the same file may belong to another study.
    other = study_make(study.dataset)
    Image.objects.create(study=other, width=10, height=10, sha256=image.sha256, file=image.file.name)


def test_one_assignment_per_image_and_reader():
    image = image_make(study_make(dataset_make()))
    reader = user_make()
    assignment_make(image, reader)
    with pytest.raises(IntegrityError), transaction.atomic():
        Assignment.objects.create(image=image, annotator=reader)


@pytest.mark.parametrize(("model", "field", "value"), [
    (Assignment, "status", "finished"),
    (Image, "status", "lost"),
])
def test_invalid_status_values_are_refused(model, field, value):
    image = image_make(study_make(dataset_make()))
    assignment = assignment_make(image, user_make())
    obj = assignment if model is Assignment else image
    with pytest.raises(IntegrityError), transaction.atomic():
        model.objects.filter(pk=obj.pk).update(**{field: value})


def test_annotators_per_image_between_one_and_three():
    dataset = dataset_make()
    with pytest.raises(IntegrityError), transaction.atomic():
        Dataset.objects.filter(pk=dataset.pk).update(annotators_per_image=4)


def test_region_shape_must_be_known():
    image = image_make(study_make(dataset_make()))
    with pytest.raises(IntegrityError), transaction.atomic():
        Region.objects.create(image=image, shape="star", geometry={})


def test_assign_work_gives_each_image_distinct_readers_and_is_idempotent():
    readers = [user_make() for _ in range(3)]
    dataset = dataset_make(annotators_per_image=2, members={"annotator": readers})
    study = study_make(dataset)
    images = [image_make(study, position=i) for i in range(6)]
    assert services.assign_work(dataset=dataset) == 12
    assert services.assign_work(dataset=dataset) == 0
    for image in images:
        readers_of = list(image.assignments.values_list("annotator", flat=True))
        assert len(readers_of) == len(set(readers_of)) == 2
    loads = sorted(Assignment.objects.filter(annotator__in=readers).values_list("annotator", flat=True))
    assert max(loads.count(r.pk) for r in readers) - min(loads.count(r.pk) for r in readers) <= 1
