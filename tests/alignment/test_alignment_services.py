"""study_align end to end on the database: what it links, what it argues with, what it keeps."""

import pytest

from alignment import services
from alignment.models import Alignment, Disagreement, StudyAlignmentState
from annotation import services as annotation_services
from annotation.models import Image, Region
from tests.factories import assignment_make, dataset_make, image_make, study_make, user_make

pytestmark = pytest.mark.django_db

REPORT = "Right breast: at 10 o'clock, 3 cm from the nipple, a 12 x 8 mm oval hypoechoic nodule. BI-RADS 3."
NODULE = {"points": [[100, 100], [220, 100], [220, 180], [100, 180]]}  # 12 x 8 mm at 0.1 mm/px


def _study(django_capture_on_commit_callbacks):
    reader = user_make()
    dataset = dataset_make(members={"annotator": [reader]}, annotators_per_image=1)
    with django_capture_on_commit_callbacks(execute=True):
        study = study_make(dataset, report=REPORT)
    image = image_make(study, width=400, height=300, spacing=0.1)
    Image.objects.filter(pk=image.pk).update(body_marker="RT BREAST 10:00 3CMFN TRV")
    image.refresh_from_db()
    return reader, study, image


def _region(image, author, *, echogenicity, source=Region.Source.READER, assignment=None):
    return annotation_services.region_create(
        image=image, author=author, assignment=assignment, source=source, shape="polygon", geometry=NODULE,
        label="nodule", lesion_key="L1",
        attributes={"diagnosis": "nodule", "organ_level": "breast", "shape": "oval", "echogenicity": echogenicity})


def test_submitted_reading_is_linked_and_its_conflict_recorded(django_capture_on_commit_callbacks):
    reader, study, image = _study(django_capture_on_commit_callbacks)
    assignment = assignment_make(image, reader)
    region = _region(image, reader, echogenicity="isoechoic", assignment=assignment)
    with django_capture_on_commit_callbacks(execute=True):
        annotation_services.assignment_submit(assignment=assignment)
    assert Alignment.objects.filter(region=region, source="auto").exists()
    conflict = Disagreement.objects.get(study=study, kind="report_vs_annotation")
    assert conflict.attribute == "echogenicity"
    assert conflict.values == {"report": ["hypoechoic"], "annotation": ["isoechoic"]}
    assert StudyAlignmentState.objects.get(study=study).runs == 2  # once for the report, once for the reading
    assert services.study_align(study_id=study.pk) == "unchanged"


def test_the_consensus_is_aligned_but_never_argued_with(django_capture_on_commit_callbacks):
    reader, study, image = _study(django_capture_on_commit_callbacks)
    consensus = _region(image, user_make(), echogenicity="isoechoic", source=Region.Source.CONSENSUS)
    services.study_align(study_id=study.pk)
    assert Alignment.objects.filter(region=consensus).exists()
    assert not Disagreement.objects.filter(study=study).exists()
