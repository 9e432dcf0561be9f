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


def _submitted_reading(django_capture_on_commit_callbacks, *, echogenicity):
    """A study whose one reader drew the report's nodule with ``echogenicity`` and submitted (aligned)."""
    reader, study, image = _study(django_capture_on_commit_callbacks)
    assignment = assignment_make(image, reader)
    region = _region(image, reader, echogenicity=echogenicity, assignment=assignment)
    with django_capture_on_commit_callbacks(execute=True):
        annotation_services.assignment_submit(assignment=assignment)
    return reader, study, image, region


def test_submitted_reading_is_linked_and_its_conflict_recorded(django_capture_on_commit_callbacks):
    _, study, _, region = _submitted_reading(django_capture_on_commit_callbacks, echogenicity="isoechoic")
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


def test_a_new_conflict_reopens_an_adjudicated_image_and_a_settled_one_closes(django_capture_on_commit_callbacks):
    reader, study, image, region = _submitted_reading(django_capture_on_commit_callbacks, echogenicity="hypoechoic")
    assert not Disagreement.objects.filter(study=study).exists()
    Image.objects.filter(pk=image.pk).update(status=Image.Status.ADJUDICATED)

    attributes = {**region.attributes, "echogenicity": "isoechoic"}
    # an admin's correction of the submitted reading (allow_closed: the reading itself is closed)
    region = annotation_services.region_update(
        region=region, actor=reader, expected_version=region.version, changes={"attributes": attributes},
        allow_closed=True)
    with django_capture_on_commit_callbacks(execute=True):  # review hears of the change on commit
        assert services.study_align(study_id=study.pk) == "aligned"
    conflict = Disagreement.objects.get(study=study, kind="report_vs_annotation")
    assert list(conflict.regions.all()) == [region]
    image.refresh_from_db()
    assert image.status == Image.Status.ANNOTATED  # its new disagreement reopened it

    # the reader corrects the value: the disagreement goes and nothing else about the image changes
    region = annotation_services.region_update(
        region=region, actor=reader, expected_version=region.version,
        changes={"attributes": {**attributes, "echogenicity": "hypoechoic"}}, allow_closed=True)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.study_align(study_id=study.pk) == "aligned"
    assert not Disagreement.objects.filter(study=study).exists()
    image.refresh_from_db()
    assert image.status == Image.Status.ANNOTATED  # no consensus yet: annotated, not adjudicated


def test_aligning_a_study_takes_a_bounded_number_of_queries(django_capture_on_commit_callbacks, django_assert_max_num_queries):
    reader, study, image = _study(django_capture_on_commit_callbacks)
    assignment = assignment_make(image, reader)
    _region(image, reader, echogenicity="isoechoic", assignment=assignment)
    annotation_services.assignment_submit(assignment=assignment)  # not aligned yet: on_commit not run
    StudyAlignmentState.objects.filter(study=study).delete()
    # report parsed and stored, regions read, a link and a disagreement written: a fixed number of
    # round trips whatever the number of findings, regions and disagreements (25 now; 48 a study on the
    # demo before disagreements were written in bulk)
    with django_assert_max_num_queries(28):
        assert services.study_align(study_id=study.pk) == "aligned"
    assert Disagreement.objects.filter(study=study).count() == 1


def test_a_submitted_reading_with_nothing_drawn_sends_the_reported_nodule_to_review(django_capture_on_commit_callbacks):
    reader, study, image = _study(django_capture_on_commit_callbacks)
    assignment = assignment_make(image, reader)
    services.study_align(study_id=study.pk)
    assert not Disagreement.objects.filter(study=study).exists()  # still being read: it may yet be drawn
    with django_capture_on_commit_callbacks(execute=True):
        annotation_services.assignment_submit(assignment=assignment)
    missing = Disagreement.objects.get(study=study)
    assert missing.kind == "reported_not_annotated" and missing.values["sources"] == [reader.username]
    assert missing.values["report"]["size_mm"] == [12.0, 8.0]
    assert missing.sentence is not None and "12 x 8 mm" in missing.sentence.text


def test_a_study_that_fails_to_align_is_marked_failed_and_its_run_ends_failed(
        django_capture_on_commit_callbacks, monkeypatch):
    from alignment import matching
    from alignment.models import AlignmentRun

    _, study, _, _ = _submitted_reading(django_capture_on_commit_callbacks, echogenicity="isoechoic")
    run = services.dataset_align_start(dataset=study.dataset)
    StudyAlignmentState.objects.filter(study=study).update(input_hash="")  # its inputs "changed"

    def broken(_study_input):
        raise ValueError("matcher broke")

    monkeypatch.setattr(matching, "study_match", broken)
    with pytest.raises(ValueError):
        services.study_align(study_id=study.pk)
    state = StudyAlignmentState.objects.get(study=study)
    assert state.status == StudyAlignmentState.Status.FAILED and state.error == "ValueError: matcher broke"
    assert state.claimed_by == ""  # released: a later run may take it again
    # the dataset run's chunk task records the failure and goes on; the run ends failed
    from alignment import tasks

    assert tasks.alignment_chunk.apply(args=(run.pk, [study.pk])).get() == 0
    run.refresh_from_db()
    assert (run.status, run.done, run.failed) == (AlignmentRun.Status.FAILED, 0, 1)
    assert run.finished_at is not None
    # what the last good run recorded is kept
    assert Disagreement.objects.filter(study=study, kind="report_vs_annotation").exists()


def _read_studies(django_capture_on_commit_callbacks, count: int):
    """``count`` studies, each with the report's nodule drawn and submitted, not aligned since."""
    studies = []
    for _ in range(count):
        reader, study, image = _study(django_capture_on_commit_callbacks)
        assignment = assignment_make(image, reader)
        _region(image, reader, echogenicity="isoechoic", assignment=assignment)
        annotation_services.assignment_submit(assignment=assignment)  # on_commit not run: not aligned
        studies.append(study)
    ids = [study.pk for study in studies]
    StudyAlignmentState.objects.filter(study_id__in=ids).delete()
    Disagreement.objects.filter(study_id__in=ids).delete()
    return ids


def test_studies_are_aligned_together_in_as_many_queries_for_ten_as_for_two(django_capture_on_commit_callbacks):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    counts = []
    for size in (2, 10):
        ids = _read_studies(django_capture_on_commit_callbacks, size)
        with CaptureQueriesContext(connection) as queries:
            assert services.studies_align(study_ids=ids) == {"aligned": size}
        counts.append(len(queries))
        # the same outcome as one study at a time: its links and its one conflict each
        assert Disagreement.objects.filter(study_id__in=ids, kind="report_vs_annotation").count() == size
        links = [Alignment.objects.filter(image__study_id=pk, source="auto").count() for pk in ids]
        assert links == [links[0]] * size and links[0] >= 1
        assert services.studies_align(study_ids=ids) == {"unchanged": size}
    assert counts[0] == counts[1] < 40


def test_one_study_that_breaks_the_batch_fails_alone(django_capture_on_commit_callbacks, monkeypatch):
    from alignment import matching

    ids = _read_studies(django_capture_on_commit_callbacks, 3)
    bad = ids[1]
    real = matching.study_match

    def broken(study_input):
        if any(image_id in study_input.image_ids for image_id in Image.objects.filter(study_id=bad).values_list("id", flat=True)):
            raise ValueError("matcher broke")
        return real(study_input)

    monkeypatch.setattr(matching, "study_match", broken)
    assert services.studies_align(study_ids=ids + [999_999]) == {"aligned": 2, "failed": 1, "gone": 1}
    states = dict(StudyAlignmentState.objects.filter(study_id__in=ids).values_list("study_id", "status"))
    assert states == {ids[0]: "done", bad: "failed", ids[2]: "done"}
    assert StudyAlignmentState.objects.get(study_id=bad).error == "ValueError: matcher broke"
    assert not Disagreement.objects.filter(study_id=bad).exists()
    assert Disagreement.objects.filter(study_id__in=[ids[0], ids[2]]).count() == 2


def test_the_parser_warmed_on_a_background_thread_is_the_one_the_first_parse_uses(monkeypatch):
    from alignment.nlp import pipeline

    monkeypatch.setattr(pipeline, "_PIPELINES", {})
    services.parser_warm().join(timeout=60)
    warmed = dict(pipeline._PIPELINES)
    assert set(warmed) == {("en", None), ("zh", None)}
    assert pipeline.get_pipeline("en") is warmed[("en", None)]
