"""The adjudication service: each action's effect on the consensus, the audit rows, the settle-others
rule, the image's adjudicated status, and that the annotators' originals are never changed."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404

from alignment.models import Disagreement
from annotation import services
from annotation.models import Image, Region, RegionRevision
from review import adjudication
from review.models import AdjudicationDecision, LesionConsensus
from tests.factories import assignment_make, dataset_make, image_make, study_make, user_make

pytestmark = pytest.mark.django_db

REPORT = ("Right breast: at 10 o'clock, 3 cm from the nipple, there is an oval hypoechoic nodule measuring "
          "1.2 x 0.8 cm with circumscribed margins, parallel orientation. Impression: BI-RADS 3.")
# Everything the report states but echogenicity is tagged as the report says, so the readers disagree
# with the report (and each other) on echogenicity only.
BASE = {"diagnosis": "nodule", "body_system_level": "breast_and_axilla", "organ_level": "breast",
        "shape": "oval", "margins": "well_defined"}
OUTLINE = {"points": [[300, 250], [450, 240], [460, 330], [310, 340]]}
SHIFTED = {"points": [[304, 252], [452, 244], [458, 334], [312, 338]]}


def _read(image, reader, *, geometry, attributes):
    assignment = assignment_make(image, reader) if not image.assignments.filter(annotator=reader).exists() \
        else image.assignments.get(annotator=reader)
    region = services.region_create(image=image, author=reader, assignment=assignment, shape="polygon",
                                    geometry=geometry, attributes=attributes, lesion_key="L1")
    return assignment, region


SECOND = {"points": [[600, 100], [700, 100], [700, 180], [600, 180]]}


def _make_case(capture, *, agreed_second_lesion: bool = False) -> dict:
    """Two readers outline the same nodule; reader 2 calls it isoechoic where the report and reader 1
    say hypoechoic. Submitting runs the alignment (tasks are eager in tests)."""
    reader1, reader2, reviewer = user_make("reader-a"), user_make("reader-b"), user_make("reviewer-r")
    dataset = dataset_make(members={"annotator": [reader1, reader2], "reviewer": [reviewer]})
    study = study_make(dataset, report=REPORT)
    image = image_make(study, width=800, height=600, spacing=0.08)
    a1, r1 = _read(image, reader1, geometry=OUTLINE, attributes={**BASE, "echogenicity": "hypoechoic"})
    a2, r2 = _read(image, reader2, geometry=SHIFTED, attributes={**BASE, "echogenicity": "isoechoic"})
    extra = []
    if agreed_second_lesion:
        for reader, assignment in ((reader1, a1), (reader2, a2)):
            extra.append(services.region_create(image=image, author=reader, assignment=assignment, shape="polygon",
                                                geometry=SECOND, attributes=BASE, lesion_key="L2"))
    with capture(execute=True):
        services.assignment_submit(assignment=a1)
        services.assignment_submit(assignment=a2)
    return {"reader1": reader1, "reader2": reader2, "reviewer": reviewer, "dataset": dataset, "study": study,
            "image": image, "r1": r1, "r2": r2, "extra": extra}


@pytest.fixture
def case(django_capture_on_commit_callbacks):
    return _make_case(django_capture_on_commit_callbacks)


def _original(region: Region) -> tuple:
    region.refresh_from_db()
    return (region.version, region.geometry, region.attributes, region.is_deleted, region.source)


def test_alignment_produces_the_disagreements_the_tests_rely_on(case):
    kinds = set(Disagreement.objects.filter(study=case["study"]).values_list("kind", "attribute"))
    assert ("reader_vs_reader", "echogenicity") in kinds
    assert ("report_vs_annotation", "echogenicity") in kinds



def _rva(case) -> Disagreement:
    return Disagreement.objects.get(study=case["study"], kind="report_vs_annotation", attribute="echogenicity")


def _rvr(case) -> Disagreement:
    return Disagreement.objects.get(study=case["study"], kind="reader_vs_reader", attribute="echogenicity")


def _consensus(case) -> list[Region]:
    return list(Region.objects.filter(image=case["image"], source="consensus", is_deleted=False))


def test_accept_report_creates_consensus_audits_and_settles_the_reader_conflict(case):
    before = [_original(case["r1"]), _original(case["r2"])]
    decision = adjudication.disagreement_resolve(disagreement=_rva(case), actor=case["reviewer"],
                                                 action="accept_report", comment="Hypoechoic on the cine loop")
    [consensus] = _consensus(case)
    assert consensus.author == case["reviewer"] and consensus.attributes["echogenicity"] == "hypoechoic"
    assert consensus.attributes["diagnosis"] == "nodule"  # the rest is copied from the readers' lesion
    assert RegionRevision.objects.filter(region=consensus, action="create", actor=case["reviewer"]).exists()
    assert decision.actor == case["reviewer"] and decision.action == "accept_report" and decision.side == "report"
    assert decision.value == "hypoechoic" and decision.comment == "Hypoechoic on the cine loop"
    assert decision.before["status"] == "open" and decision.consensus_region == consensus
    rva, rvr = _rva(case), _rvr(case)
    assert rva.status == "resolved" and rva.resolved_by == case["reviewer"] and rva.resolved_at
    assert rva.resolution["value"] == "hypoechoic"
    # Settle-others: the reader-vs-reader conflict on the same attribute of the same lesion is answered.
    assert rvr.status == "resolved" and rvr.resolution["action"] == "settled"
    settled = AdjudicationDecision.objects.get(disagreement=rvr)
    assert settled.action == "settled" and settled.settled_by == decision and settled.actor == case["reviewer"]
    assert set(LesionConsensus.objects.values_list("region_id", "consensus_id")) == {
        (case["r1"].pk, consensus.pk), (case["r2"].pk, consensus.pk)}
    assert [_original(case["r1"]), _original(case["r2"])] == before  # originals untouched
    assert Image.objects.get(pk=case["image"].pk).status == "adjudicated"


def test_accepting_a_reader_copies_their_outline_and_value(case):
    adjudication.disagreement_resolve(disagreement=_rvr(case), actor=case["reviewer"], action="accept_annotation",
                                      side="reader-b")
    [consensus] = _consensus(case)
    assert consensus.geometry == SHIFTED and consensus.attributes["echogenicity"] == "isoechoic"
    assert _rva(case).status == "resolved"  # same attribute, same lesion: settled too
    assert _original(case["r2"])[0] == 1


def test_report_wrong_keeps_the_annotation_value(case):
    adjudication.disagreement_resolve(disagreement=_rva(case), actor=case["reviewer"], action="report_wrong",
                                      comment="Report dictated for the other breast")
    [consensus] = _consensus(case)
    assert consensus.attributes["echogenicity"] == "isoechoic"
    decision = AdjudicationDecision.objects.get(disagreement=_rva(case))
    assert decision.action == "report_wrong" and _rva(case).resolution["action"] == "accept_annotation"


def test_annotation_wrong_takes_the_report_value(case):
    adjudication.disagreement_resolve(disagreement=_rva(case), actor=case["reviewer"], action="annotation_wrong")
    assert _consensus(case)[0].attributes["echogenicity"] == "hypoechoic"


def test_other_value_is_validated_against_the_lexicon(case):
    with pytest.raises(ValidationError):
        adjudication.disagreement_resolve(disagreement=_rvr(case), actor=case["reviewer"], action="other_value",
                                          value="purple")
    assert not _consensus(case) and _rvr(case).status == "open"
    assert not AdjudicationDecision.objects.exists()  # a refused action leaves no trace but the error
    adjudication.disagreement_resolve(disagreement=_rvr(case), actor=case["reviewer"], action="other_value",
                                      value="anechoic", comment="Cyst")
    assert _consensus(case)[0].attributes["echogenicity"] == "anechoic"
    assert _rva(case).status == "resolved" and _rva(case).resolution["value"] == "anechoic"


def test_second_decision_updates_the_same_consensus_region(case):
    adjudication.disagreement_resolve(disagreement=_rvr(case), actor=case["reviewer"], action="comment",
                                      comment="Checking the cine")
    assert _rvr(case).status == "open"
    adjudication.disagreement_resolve(disagreement=_rva(case), actor=case["reviewer"], action="dismiss")
    assert _rva(case).status == "dismissed" and not _consensus(case)
    assert Image.objects.get(pk=case["image"].pk).status == "annotated"  # one still open
    adjudication.disagreement_resolve(disagreement=_rvr(case), actor=case["reviewer"], action="edit_geometry",
                                      shape="polygon", geometry=SECOND)
    [consensus] = _consensus(case)
    assert consensus.geometry == SECOND and _rvr(case).status == "open"  # the value is still undecided
    adjudication.disagreement_resolve(disagreement=_rvr(case), actor=case["reviewer"], action="accept_annotation",
                                      side="reader-a")
    [again] = _consensus(case)
    # one region per lesion; it already carried reader A's value, so no new version is recorded
    assert again.pk == consensus.pk and again.version == consensus.version and again.geometry == SECOND
    assert again.attributes["echogenicity"] == case["r1"].attributes["echogenicity"]
    assert again.attributes["echogenicity"] == "hypoechoic"
    assert list(AdjudicationDecision.objects.filter(disagreement__study=case["study"]).values_list("action", flat=True)) == [
        "comment", "dismiss", "edit_geometry", "accept_annotation"]
    assert Image.objects.get(pk=case["image"].pk).status == "adjudicated"


def test_not_a_lesion_links_originals_to_no_consensus_and_adjudicates(case):
    adjudication.disagreement_resolve(disagreement=_rva(case), actor=case["reviewer"], action="accept_report")
    assert _consensus(case)
    adjudication.disagreement_resolve(disagreement=_rvr(case), actor=case["reviewer"], action="not_a_lesion",
                                      comment="Fat lobule", revise=True)
    assert not _consensus(case)  # the reviewers' own region is withdrawn (soft delete, history kept)
    assert set(LesionConsensus.objects.values_list("region_id", "not_a_lesion")) == {
        (case["r1"].pk, True), (case["r2"].pk, True)}
    assert not Region.objects.filter(pk__in=[case["r1"].pk, case["r2"].pk], is_deleted=True).exists()
    assert Image.objects.get(pk=case["image"].pk).status == "adjudicated"


def test_a_closed_disagreement_is_not_decided_twice_by_accident(case):
    adjudication.disagreement_resolve(disagreement=_rva(case), actor=case["reviewer"], action="accept_report")
    with pytest.raises(ValidationError, match="already resolved"):
        adjudication.disagreement_resolve(disagreement=_rvr(case), actor=case["reviewer"], action="dismiss")
    with pytest.raises(ValidationError):
        adjudication.disagreement_resolve(disagreement=_rvr(case), actor=case["reviewer"], action="comment")


def test_agreed_lesions_join_the_consensus_when_the_image_is_done(django_capture_on_commit_callbacks):
    """A second lesion both readers drew alike. Whatever the alignment says about it (which lesion the
    report's nodule goes to is the matcher's business), once nothing on the image is open every lesion
    without a consensus gets one, copied from the readers and audited as ``confirm``."""
    case = _make_case(django_capture_on_commit_callbacks, agreed_second_lesion=True)
    adjudication.disagreement_resolve(disagreement=_rvr(case), actor=case["reviewer"], action="accept_annotation",
                                      side="reader-a")
    for other in Disagreement.objects.filter(study=case["study"], status="open").order_by("id"):
        assert Image.objects.get(pk=case["image"].pk).status == "annotated"
        adjudication.disagreement_resolve(disagreement=other, actor=case["reviewer"], action="dismiss")
    consensus = {tuple(map(tuple, r.geometry["points"])): r for r in _consensus(case)}
    assert set(consensus) == {tuple(map(tuple, OUTLINE["points"])), tuple(map(tuple, SECOND["points"]))}
    assert consensus[tuple(map(tuple, OUTLINE["points"]))].attributes["echogenicity"] == "hypoechoic"
    promoted = AdjudicationDecision.objects.get(action="confirm", image=case["image"])
    assert promoted.consensus_region == consensus[tuple(map(tuple, SECOND["points"]))]
    assert Image.objects.get(pk=case["image"].pk).status == "adjudicated"


def test_only_reviewers_of_the_dataset_may_adjudicate(case):
    rva = _rva(case)
    with pytest.raises(PermissionDenied):
        adjudication.disagreement_get_for_user(user=case["reader1"], disagreement_id=rva.pk)
    with pytest.raises(Http404):
        adjudication.disagreement_get_for_user(user=user_make("outsider"), disagreement_id=rva.pk)
    assert adjudication.disagreement_get_for_user(user=case["reviewer"], disagreement_id=rva.pk) == rva


def test_queue_orders_by_impact_filters_and_counts(case):
    filters = adjudication.ReviewFilters()
    queue = list(adjudication.review_queue(user=case["reviewer"], filters=filters))
    assert {d.kind for d in queue} >= {"report_vs_annotation", "reader_vs_reader"}
    assert [d.impact for d in queue] == sorted((d.impact for d in queue), reverse=True)
    counts = adjudication.review_counts(user=case["reviewer"], filters=filters)
    assert counts["report_vs_annotation"] == 1 and counts["reader_vs_reader"] == 1
    by_reader_a = adjudication.ReviewFilters(annotator=case["reader1"].pk)
    assert [d.kind for d in adjudication.review_queue(user=case["reviewer"], filters=by_reader_a)] == ["reader_vs_reader"]
    echo = adjudication.ReviewFilters(attribute="echogenicity", kind="report_vs_annotation")
    assert [d.pk for d in adjudication.review_queue(user=case["reviewer"], filters=echo)] == [_rva(case).pk]
    assert not adjudication.review_queue(user=case["reviewer"], filters=adjudication.ReviewFilters(age="old")).exists()
    assert adjudication.review_queue(user=case["reader1"], filters=filters).count() == 0





def test_a_disagreement_about_the_consensus_itself_updates_that_region(case):
    """Once it exists the consensus counts as annotation, so a later alignment may question it; the
    answer goes to that region, never to a copy of it."""
    adjudication.disagreement_resolve(disagreement=_rvr(case), actor=case["reviewer"], action="accept_annotation",
                                      side="reader-b")
    [consensus] = _consensus(case)
    raised = Disagreement.objects.create(
        dataset=case["dataset"], study=case["study"], image=case["image"], kind="report_vs_annotation",
        attribute="echogenicity", values={"report": ["hypoechoic"], "annotation": ["isoechoic"]},
        fingerprint="about-consensus", input_hash="x")
    raised.regions.set([consensus])
    adjudication.disagreement_resolve(disagreement=raised, actor=case["reviewer"], action="accept_report")
    [again] = _consensus(case)
    assert again.pk == consensus.pk and again.attributes["echogenicity"] == "hypoechoic"
    assert not LesionConsensus.objects.filter(region=consensus).exists()
