"""The demo seeder: deterministic, complete, ready for the annotators' queues."""

import pytest
from django.core.management import call_command

from annotation.lexicons import attributes_validate
from annotation.models import Assignment, Image, Region, Report, Study
from demo.services import seed_demo

pytestmark = pytest.mark.django_db


def _snapshot(dataset):
    studies = list(Study.objects.filter(dataset=dataset).order_by("accession").values_list(
        "accession", "patient", "exam_date", "metadata"))
    reports = list(Report.objects.filter(study__dataset=dataset).order_by("study__accession").values_list(
        "text", "language"))
    images = list(Image.objects.filter(study__dataset=dataset).order_by("study__accession", "position").values_list(
        "sha256", "width", "height", "pixel_spacing_x_mm", "laterality", "body_marker", "status"))
    regions = list(Region.objects.filter(image__study__dataset=dataset).order_by("source_id", "author__username")
                   .values_list("source_id", "author__username", "shape", "geometry", "attributes", "area_px"))
    return studies, reports, images, regions


def test_same_seed_gives_the_same_dataset():
    first = seed_demo(studies=6, seed=11, dataset_name="a", readings=0.5)
    second = seed_demo(studies=6, seed=11, dataset_name="b", readings=0.5)
    assert _snapshot(first.dataset) == _snapshot(second.dataset)
    third = seed_demo(studies=6, seed=12, dataset_name="c", readings=0.5)
    assert _snapshot(third.dataset)[1] != _snapshot(first.dataset)[1]


def test_seeded_dataset_is_ready_for_work():
    result = seed_demo(studies=8, seed=3, readings=0.5)
    images = Image.objects.filter(study__dataset=result.dataset)
    assert images.count() == result.images > 8
    for image in images:
        readers = set(image.assignments.values_list("annotator__username", flat=True))
        assert readers == {"annotator1", "annotator2"}
    assert Assignment.objects.filter(status="assigned").exists()
    assert Assignment.objects.filter(status="submitted").exists()
    languages = set(Report.objects.filter(study__dataset=result.dataset).values_list("language", flat=True))
    assert languages <= {"en", "zh"}
    truth = Study.objects.filter(dataset=result.dataset).first().metadata["truth"]
    assert truth["sentences"] and truth["images"]
    for region in Region.objects.filter(image__study__dataset=result.dataset):
        assert region.long_axis_mm and region.area_mm2


def test_seeded_regions_are_tagged_in_the_datasets_lexicon():
    result = seed_demo(studies=12, seed=4, readings=1.0)
    regions = Region.objects.filter(image__study__dataset=result.dataset)
    assert regions.exists() and any(d["kind"] == "attribute" for d in result.reader_disagreements)
    for region in regions:
        # What the region services would accept, the second reader's changed values included.
        assert attributes_validate(result.dataset.lexicon, region.attributes) == region.attributes


def test_command_is_idempotent_with_if_empty(capsys):
    call_command("seed_demo", "--studies", "3", "--seed", "5", "--dataset", "cmd", verbosity=0)
    call_command("seed_demo", "--studies", "3", "--seed", "5", "--dataset", "cmd", "--if-empty", verbosity=0)
    assert Study.objects.filter(dataset__name="cmd").count() == 3
    assert "already has 3 studies" in capsys.readouterr().out


def test_metrics_refresh_command_computes_a_snapshot(capsys):
    from review.models import DatasetMetrics

    result = seed_demo(studies=3, seed=2, dataset_name="metrics", readings=1.0)
    call_command("metrics_refresh", "--dataset", "metrics")
    assert DatasetMetrics.objects.filter(dataset=result.dataset).count() == 1
    assert "computed in" in capsys.readouterr().out
