"""Reviewers' manual alignment decisions: a link is kept across re-runs, an unlink removes the
matcher's link and keeps it out, resetting hands the pair back to the matcher; and the report panel
of the annotate page that shows and makes them."""

from __future__ import annotations

import pytest
from django.test import Client

from alignment import selectors
from alignment.models import Alignment, Sentence
from alignment.services import alignment_manual_reset, alignment_manual_set, study_align
from annotation import services as annotation_services
from tests.alignment.test_api_alignment import aligned_study_make

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(django_capture_on_commit_callbacks):
    return aligned_study_make(django_capture_on_commit_callbacks)


def _force_rerun(world) -> None:
    """Change the region so the study's inputs change and ``study_align`` really runs again."""
    region = world["region"]
    region.refresh_from_db()
    annotation_services.region_update(region=region, actor=world["admin"], expected_version=region.version, allow_closed=True,
                                      changes={"label": "nodule"})


def _pairs(world, source: str, linked: bool = True) -> set[tuple[int, int]]:
    return set(Alignment.objects.filter(image__study=world["study"], source=source, linked=linked)
               .values_list("sentence_id", "region_id"))


def test_manual_link_is_kept_across_a_rerun(world):
    header = world["sentences"][0]  # "Right breast:" — the matcher links the nodule sentence, not this one
    assert (header.pk, world["region"].pk) not in _pairs(world, "auto")
    alignment_manual_set(sentence=header, region=world["region"], linked=True, actor=world["reviewer"])
    _force_rerun(world)
    assert study_align(study_id=world["study"].pk) == "aligned"
    assert _pairs(world, "manual") == {(header.pk, world["region"].pk)}
    assert (world["nodule"].pk, world["region"].pk) in _pairs(world, "auto")  # the matcher's own link stays
    assert study_align(study_id=world["study"].pk) == "unchanged"
    assert _pairs(world, "manual") == {(header.pk, world["region"].pk)}


def test_manual_unlink_removes_the_auto_link_and_keeps_it_out(world):
    pair = (world["nodule"].pk, world["region"].pk)
    assert pair in _pairs(world, "auto")
    alignment_manual_set(sentence=world["nodule"], region=world["region"], linked=False, actor=world["reviewer"])
    # Shown as unlinked at once, before any worker ran.
    sentences = selectors.study_alignment_for_user(user=world["reviewer"], study=world["study"])
    assert next(s for s in sentences if s["id"] == world["nodule"].pk)["links"] == []
    assert study_align(study_id=world["study"].pk) == "aligned"  # the decision itself changes the inputs
    assert pair not in _pairs(world, "auto")
    _force_rerun(world)
    study_align(study_id=world["study"].pk)
    assert pair not in _pairs(world, "auto")
    assert _pairs(world, "manual", linked=False) == {pair}

    # Back to automatic: the matcher's link returns on the next run.
    assert alignment_manual_reset(sentence=world["nodule"], region=world["region"]) == 1
    study_align(study_id=world["study"].pk)
    assert pair in _pairs(world, "auto") and not _pairs(world, "manual", linked=False)


def test_a_new_decision_replaces_the_previous_one_for_the_pair(world):
    for linked in (True, False, True):
        alignment_manual_set(sentence=world["nodule"], region=world["region"], linked=linked, actor=world["reviewer"])
    decisions = Alignment.objects.filter(source="manual")
    assert decisions.count() == 1 and decisions.get().linked is True
    assert decisions.get().created_by == world["reviewer"]
    assert decisions.get().score > 0 and "laterality" in decisions.get().evidence  # the matcher's evidence, kept


def test_manual_decisions_follow_their_sentence_into_a_new_report_version(world, django_capture_on_commit_callbacks):
    alignment_manual_set(sentence=world["nodule"], region=world["region"], linked=False, actor=world["reviewer"])
    with django_capture_on_commit_callbacks(execute=True):
        annotation_services.report_set(study=world["study"],
                                       text=world["study"].report.text + " Axillae: no adenopathy.")
    new_nodule = Sentence.objects.get(report__study=world["study"], report_version=2, text=world["nodule"].text)
    assert _pairs(world, "manual", linked=False) == {(new_nodule.pk, world["region"].pk)}
    assert (new_nodule.pk, world["region"].pk) not in _pairs(world, "auto")


# ---------------------------------------------------------------------------------------------- report panel


def _page(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_report_panel_marks_sentences_with_their_regions(world):
    response = _page(world["annotator"]).get(f"/images/{world['image'].pk}/report/")
    assert response.status_code == 200
    html = response.content.decode()
    assert f'data-sentence-id="{world["nodule"].pk}" data-regions="{world["region"].pk}"' in html
    assert "has-finding" in html and "nodule · right 10:00 · 3 cm FN · 12×8 mm" in html
    assert "pair-button" not in html  # annotators get no link controls
    assert _page(world["outsider"]).get(f"/images/{world['image'].pk}/report/").status_code == 404


def test_reviewer_unlinks_and_resets_from_the_report_panel(world, django_capture_on_commit_callbacks):
    client = _page(world["reviewer"])
    html = client.get(f"/images/{world['image'].pk}/report/?region={world['region'].pk}").content.decode()
    assert f"Unlink #{world['region'].pk}" in html
    url = f"/images/{world['image'].pk}/report/alignments/"
    body = {"sentence": world["nodule"].pk, "region": world["region"].pk}
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, {**body, "action": "unlink"})
    assert response.status_code == 200
    html = response.content.decode()
    assert f'data-sentence-id="{world["nodule"].pk}" data-regions=""' in html and "manual unlink · reset" in html
    assert (world["nodule"].pk, world["region"].pk) not in _pairs(world, "auto")
    with django_capture_on_commit_callbacks(execute=True):
        client.post(url, {**body, "action": "auto"})
    assert (world["nodule"].pk, world["region"].pk) in _pairs(world, "auto")
    assert not Alignment.objects.filter(source="manual").exists()


def test_annotator_cannot_decide_from_the_report_panel(world):
    response = _page(world["annotator"]).post(f"/images/{world['image'].pk}/report/alignments/", {
        "sentence": world["nodule"].pk, "region": world["region"].pk, "action": "unlink"})
    assert response.status_code == 403
    assert not Alignment.objects.filter(source="manual").exists()
