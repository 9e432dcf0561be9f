"""The alignment API: the study's sentences, findings and links under blind reading, and reviewers'
manual link / unlink decisions, with the permission matrix (annotator 403, outsider 404)."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from alignment.models import Alignment, Finding, Sentence
from annotation import services
from tests.factories import assignment_make, dataset_make, image_make, study_make, user_make

pytestmark = pytest.mark.django_db

REPORT = (
    "Right breast: at 10 o'clock, 3 cm from the nipple, there is an oval hypoechoic nodule measuring "
    "1.2 x 0.8 cm with circumscribed margins. No internal vascularity. Left breast: no focal lesion."
)
ELLIPSE = {"center": [200, 150], "radii": [60, 40], "rotation": 0}  # 12 × 8 mm at 0.1 mm/px
COMPLETE = {"diagnosis": "nodule", "organ_level": "breast", "body_system_level": "breast_and_axilla"}


def aligned_study_make(capture, *, submit: bool = True) -> dict:
    """A study with a report and one right-breast image read by one annotator whose nodule region the
    matcher links to the report's nodule sentence once the reading is submitted. ``capture`` is
    pytest-django's ``django_capture_on_commit_callbacks``: the queued parse and alignment run as the
    test's transaction never commits."""
    with capture(execute=True):
        world = _aligned_study(submit=submit)
    sentences = list(Sentence.objects.filter(report__study=world["study"]).order_by("index"))
    nodule = next(s for s in sentences if "nodule" in s.text)
    return {**world, "sentences": sentences, "nodule": nodule}


def _aligned_study(*, submit: bool) -> dict:
    users = {name: user_make(name) for name in ("annotator", "second", "reviewer", "admin", "outsider")}
    dataset = dataset_make(annotators_per_image=2, members={"reviewer": [users["reviewer"]], "admin": [users["admin"]]})
    study = study_make(dataset, report=REPORT)
    image = image_make(study, laterality="right")
    image.body_marker = "RT BREAST 10:00 3CMFN TRV"
    image.save()
    assignment = assignment_make(image, users["annotator"])
    second = assignment_make(image, users["second"])
    region = services.region_create(image=image, author=users["annotator"], assignment=assignment, shape="ellipse",
                                    geometry=ELLIPSE, attributes={**COMPLETE, "shape": "oval"}, lesion_key="L1")
    if submit:
        services.assignment_submit(assignment=assignment)
    return {**users, "dataset": dataset, "study": study, "image": image, "region": region, "assignment": assignment,
            "second_assignment": second}


def _api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def world(django_capture_on_commit_callbacks):
    return aligned_study_make(django_capture_on_commit_callbacks)


def _links(response) -> dict[int, list[dict]]:
    return {s["id"]: s["links"] for s in response.json()["sentences"]}


def test_study_alignment_lists_sentences_findings_and_the_auto_link(world):
    response = _api(world["reviewer"]).get(f"/api/v1/studies/{world['study'].pk}/alignment/")
    assert response.status_code == 200
    sentences = response.json()["sentences"]
    nodule = next(s for s in sentences if s["id"] == world["nodule"].pk)
    assert REPORT[nodule["start"]:nodule["end"]] == nodule["text"]
    assert nodule["findings"][0]["data"]["clock"] == "10:00"
    assert nodule["findings"][0]["size_mm"] == [12.0, 8.0]
    [link] = nodule["links"]
    assert link["region"] == world["region"].pk and link["image"] == world["image"].pk
    assert link["source"] == "auto" and link["score"] > 0 and "laterality" in link["evidence"]


@pytest.mark.parametrize("role, expected", [("annotator", 200), ("second", 200), ("reviewer", 200), ("admin", 200),
                                            ("outsider", 404)])
def test_study_alignment_read_permissions(world, role, expected):
    response = _api(world[role]).get(f"/api/v1/studies/{world['study'].pk}/alignment/")
    assert response.status_code == expected


def test_annotator_sees_no_link_to_another_readers_region_before_submitting(world, django_capture_on_commit_callbacks):
    """Blind reading: the second reader has not submitted, so the first reader's region — and every
    link to it — stays hidden from them; its author still sees their own."""
    second = _links(_api(world["second"]).get(f"/api/v1/studies/{world['study'].pk}/alignment/"))
    assert second[world["nodule"].pk] == []
    own = _links(_api(world["annotator"]).get(f"/api/v1/studies/{world['study'].pk}/alignment/"))
    assert [link["region"] for link in own[world["nodule"].pk]] == [world["region"].pk]
    with django_capture_on_commit_callbacks(execute=True):
        services.assignment_submit(assignment=world["second_assignment"])
    second = _links(_api(world["second"]).get(f"/api/v1/studies/{world['study'].pk}/alignment/"))
    assert [link["region"] for link in second[world["nodule"].pk]] == [world["region"].pk]


def test_image_filter_must_be_an_image_of_the_study(world):
    other = image_make(study_make(world["dataset"]))
    client = _api(world["reviewer"])
    assert client.get(f"/api/v1/studies/{world['study'].pk}/alignment/?image={world['image'].pk}").status_code == 200
    assert client.get(f"/api/v1/studies/{world['study'].pk}/alignment/?image={other.pk}").status_code == 404
    assert client.get(f"/api/v1/studies/{world['study'].pk}/alignment/?image=x").status_code == 400


@pytest.mark.parametrize("role, expected", [("annotator", 403), ("second", 404), ("outsider", 404),
                                            ("reviewer", 201), ("admin", 201)])
def test_manual_decision_permissions(world, role, expected):
    response = _api(world[role]).post("/api/v1/alignments/", {
        "sentence": world["sentences"][0].pk, "region": world["region"].pk, "linked": True}, format="json")
    assert response.status_code == expected
    assert Alignment.objects.filter(source="manual").count() == (1 if expected == 201 else 0)


def test_staff_may_decide_anywhere_and_anonymous_may_not(world):
    staff = user_make("staff", staff=True)
    body = {"sentence": world["sentences"][0].pk, "region": world["region"].pk, "linked": True}
    assert _api(staff).post("/api/v1/alignments/", body, format="json").status_code == 201
    assert APIClient().post("/api/v1/alignments/", body, format="json").status_code in (401, 403)


def test_manual_link_appears_in_the_study_alignment_and_delete_returns_the_pair_to_automatic(world):
    client = _api(world["reviewer"])
    first = world["sentences"][0]  # "Right breast:" — not aligned by the matcher
    created = client.post("/api/v1/alignments/", {"sentence": first.pk, "region": world["region"].pk, "linked": True},
                          format="json")
    assert created.status_code == 201 and created.json()["source"] == "manual"
    links = _links(client.get(f"/api/v1/studies/{world['study'].pk}/alignment/"))
    assert [(link["region"], link["source"]) for link in links[first.pk]] == [(world["region"].pk, "manual")]

    # Annotators may neither read nor remove a decision; outsiders do not learn it exists.
    assert _api(world["annotator"]).delete(f"/api/v1/alignments/{created.json()['id']}/").status_code == 403
    assert _api(world["outsider"]).delete(f"/api/v1/alignments/{created.json()['id']}/").status_code == 404
    assert client.delete(f"/api/v1/alignments/{created.json()['id']}/").status_code == 204
    links = _links(client.get(f"/api/v1/studies/{world['study'].pk}/alignment/"))
    assert links[first.pk] == []


def test_an_automatic_link_cannot_be_deleted_only_unlinked(world):
    auto = Alignment.objects.get(source="auto", sentence=world["nodule"], region=world["region"])
    response = _api(world["reviewer"]).delete(f"/api/v1/alignments/{auto.pk}/")
    assert response.status_code == 400
    assert Alignment.objects.filter(pk=auto.pk).exists()


def test_manual_decision_needs_sentence_and_region_of_one_study(world, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        other_study = study_make(world["dataset"], report="Left breast: a 5 mm cyst at 2 o'clock.")
    other_sentence = Sentence.objects.filter(report__study=other_study).first()
    response = _api(world["reviewer"]).post("/api/v1/alignments/", {
        "sentence": other_sentence.pk, "region": world["region"].pk, "linked": True}, format="json")
    assert response.status_code == 400
    assert "sentence" in response.json()
    response = _api(world["reviewer"]).post("/api/v1/alignments/", {
        "sentence": 999999, "region": world["region"].pk, "linked": True}, format="json")
    assert response.status_code == 404
    response = _api(world["reviewer"]).post("/api/v1/alignments/", {"sentence": world["nodule"].pk}, format="json")
    assert response.status_code == 400 and set(response.json()) == {"region", "linked"}


def test_report_findings_of_an_aligned_region_come_from_its_sentence(world):
    response = _api(world["reviewer"]).get(f"/api/v1/regions/{world['region'].pk}/report-findings/")
    assert response.status_code == 200
    body = response.json()
    assert body["basis"] == "aligned" and world["nodule"].pk in body["sentences"]
    assert body["attributes"]["echogenicity"] == "hypoechoic"
    assert body["attributes"]["margins"] == "well_defined"
    assert body["attributes"]["diagnosis"] == "nodule"
    assert "orientation" not in body["attributes"]  # a BI-RADS term, not in this dataset's lexicon
    assert _api(world["outsider"]).get(f"/api/v1/regions/{world['region'].pk}/report-findings/").status_code == 404


def test_report_findings_before_alignment_follow_the_body_marker(django_capture_on_commit_callbacks):
    """A reading in progress is not aligned yet: the reader still gets the finding whose side and clock
    match the image's body marker — and nothing from the other side."""
    world = aligned_study_make(django_capture_on_commit_callbacks, submit=False)
    client = _api(world["annotator"])
    body = client.get(f"/api/v1/regions/{world['region'].pk}/report-findings/").json()
    assert body["basis"] == "location" and body["sentences"] == [world["nodule"].pk]
    assert body["attributes"]["echogenicity"] == "hypoechoic"
    world["image"].laterality = "left"
    world["image"].body_marker = "LT BREAST 2:00"
    world["image"].save()
    body = client.get(f"/api/v1/regions/{world['region'].pk}/report-findings/").json()
    assert body["basis"] is None and body["attributes"] == {}


def test_finding_tags_follow_the_interface_language():
    from django.utils import translation

    from alignment.selectors import finding_summary

    finding = Finding(lesion="nodule", laterality="right", clock="10:00", quadrant="", size_mm=[12.0, 8.0],
                      distance_from_nipple_cm=3.0, negated=False)
    with translation.override("en"):
        assert finding_summary(finding) == "nodule · right 10:00 · 3 cm FN · 12×8 mm"
    with translation.override("zh-hans"):
        assert finding_summary(finding) == "结节 · 右侧 10:00 · 距乳头 3 cm · 12×8 mm"
    absent = Finding(organ="thyroid_gland", laterality="", clock="", quadrant="", negated=True)
    with translation.override("zh-hans"):
        assert finding_summary(absent).startswith("未见")
