"""The reader's workspace: assignment, queue pages and API, next task, submit, image access, history."""

import pytest
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient

from annotation import selectors, services
from annotation.models import Assignment
from tests.factories import SQUARE, assignment_make, dataset_make, image_make, study_make, user_make

pytestmark = pytest.mark.django_db
COMPLETE = {"diagnosis": "nodule", "organ_level": "breast"}


def _api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def _page(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def world():
    readers = [user_make(f"reader{i}") for i in range(3)]
    dataset = dataset_make(annotators_per_image=2, members={"annotator": readers})
    study = study_make(dataset, report="Right breast: oval hypoechoic nodule. No vascularity.")
    images = [image_make(study, position=i) for i in range(4)]
    return {"readers": readers, "dataset": dataset, "study": study, "images": images}


@pytest.mark.parametrize("per_image", [1, 2, 3])
def test_assign_work_gives_each_image_the_configured_number_of_distinct_readers(per_image):
    readers = [user_make() for _ in range(3)]
    dataset = dataset_make(annotators_per_image=per_image, members={"annotator": readers})
    images = [image_make(study_make(dataset)) for _ in range(5)]
    assert services.assign_work(dataset=dataset) == 5 * per_image
    for image in images:
        assert image.assignments.values("annotator").distinct().count() == per_image
    loads = [Assignment.objects.filter(annotator=r).count() for r in readers]
    assert max(loads) - min(loads) <= 1  # balanced
    assert services.assign_work(dataset=dataset) == 0  # re-running hands out nothing twice


def test_assign_work_command_uses_named_annotators(world):
    call_command("assign_work", "--dataset", world["dataset"].name, "--annotators", "reader0,reader1")
    assert set(Assignment.objects.values_list("annotator__username", flat=True)) == {"reader0", "reader1"}
    assert Assignment.objects.count() == 8


def test_queue_counts_next_and_pages(world):
    services.assign_work(dataset=world["dataset"], annotators=world["readers"][:2])
    reader = world["readers"][0]
    page = _page(reader).get("/queue/")
    assert page.status_code == 200
    assert page.context["counts"] == {"assigned": 4, "in_progress": 0, "submitted": 0}
    assert b"Start reading" in page.content
    partial = _page(reader).get("/queue/?status=submitted", HTTP_HX_REQUEST="true")
    assert b"<html" not in partial.content and b"No images here" in partial.content
    opened = _page(reader).get("/queue/next/")
    assert opened.status_code == 302 and opened["Location"] == f"/images/{world['images'][0].pk}/annotate/"


def test_opening_an_image_starts_the_reading_and_serves_the_page(world):
    reader = world["readers"][0]
    assignment = assignment_make(world["images"][0], reader)
    response = _page(reader).get(f"/images/{world['images'][0].pk}/annotate/")
    assert response.status_code == 200
    assert b"hypoechoic nodule" in response.content and b"Diagnosis" in response.content
    assignment.refresh_from_db()
    assert assignment.status == "in_progress"


def test_image_file_is_served_only_to_permitted_users(world):
    reader = world["readers"][0]
    image = world["images"][0]
    assignment_make(image, reader)
    served = _page(reader).get(f"/images/{image.pk}/file")
    assert served.status_code == 200 and served["Content-Type"] == "image/png"
    assert b"".join(served.streaming_content)[:8] == b"\x89PNG\r\n\x1a\n"
    assert _page(world["readers"][1]).get(f"/images/{image.pk}/file").status_code == 404  # not assigned
    assert _page(user_make("outsider")).get(f"/images/{image.pk}/file").status_code == 404
    assert Client().get(f"/images/{image.pk}/file").status_code == 302  # to the login page


def test_api_queue_and_next(world):
    services.assign_work(dataset=world["dataset"], annotators=world["readers"][:2])
    client = _api(world["readers"][0])
    body = client.get("/api/v1/queue/?status=assigned").json()
    assert body["count"] == 4 and body["counts"]["assigned"] == 4
    assert body["results"][0]["annotate_url"] == f"/images/{world['images'][0].pk}/annotate/"
    assert client.get("/api/v1/queue/?status=bogus").status_code == 400
    following = client.get("/api/v1/queue/next/").json()["next"]
    assert following["image"] == world["images"][0].pk
    assert _api(user_make("idle")).get("/api/v1/queue/next/").json() == {"next": None}


def test_api_submit_validates_required_attributes_then_hands_out_the_next(world):
    reader = world["readers"][0]
    first, second = (assignment_make(image, reader) for image in world["images"][:2])
    region = services.region_create(image=first.image, author=reader, assignment=first, shape="polygon",
                                    geometry=SQUARE, attributes={"diagnosis": "nodule"})
    client = _api(reader)
    refused = client.post(f"/api/v1/assignments/{first.pk}/submit/")
    assert refused.status_code == 400
    assert any("organ_level is required" in problem for problem in refused.json()["regions"])
    services.region_update(region=region, actor=reader, expected_version=1, changes={"attributes": COMPLETE})
    done = client.post(f"/api/v1/assignments/{first.pk}/submit/").json()
    assert done["assignment"]["status"] == "submitted" and done["next"]["id"] == second.pk
    # A submitted reading is closed.
    patch = client.patch(f"/api/v1/regions/{region.pk}/", {"version": 2, "label": "x"}, format="json")
    assert patch.status_code == 403
    # Another reader of the dataset may not act on it (403); an outsider does not learn it exists (404).
    assert _api(world["readers"][1]).post(f"/api/v1/assignments/{first.pk}/submit/").status_code == 403
    assert _api(user_make("outsider")).post(f"/api/v1/assignments/{first.pk}/submit/").status_code == 404


def test_page_submit_falls_back_without_javascript(world):
    reader = world["readers"][0]
    first, second = (assignment_make(image, reader) for image in world["images"][:2])
    response = _page(reader).post(f"/assignments/{first.pk}/submit/")
    assert response.status_code == 302 and response["Location"] == f"/images/{second.image_id}/annotate/"


def test_region_list_partial_flags_missing_attributes(world):
    reader = world["readers"][0]
    assignment = assignment_make(world["images"][0], reader)
    services.region_create(image=assignment.image, author=reader, assignment=assignment, shape="polygon",
                           geometry=SQUARE, attributes={"diagnosis": "nodule"})
    html = _page(reader).get(f"/images/{assignment.image_id}/regions/").content.decode()
    assert "missing" in html and "mm²" in html


def test_region_history_page_for_reviewers_only(world):
    reader = world["readers"][0]
    assignment = assignment_make(world["images"][0], reader)
    region = services.region_create(image=assignment.image, author=reader, assignment=assignment,
                                    shape="polygon", geometry=SQUARE)
    services.region_update(region=region, actor=reader, expected_version=1, changes={"label": "cyst"})
    reviewer = user_make("rev")
    services.membership_add(dataset=world["dataset"], user=reviewer, role="reviewer")
    page = _page(reviewer).get(f"/regions/{region.pk}/history/")
    assert page.status_code == 200
    assert [r.action for r in page.context["revisions"]] == ["create", "update"]
    assert "reader0" in page.content.decode()
    assert _page(reader).get(f"/regions/{region.pk}/history/").status_code == 403


def test_report_sentences_split_english_and_chinese():
    text = "右乳见低回声结节，大小约1.2×0.8cm。CDFI：未见血流信号。"
    assert [s["text"] for s in selectors._sentences_split(text)] == ["右乳见低回声结节，大小约1.2×0.8cm。", "CDFI：未见血流信号。"]
    english = selectors._sentences_split("Oval nodule 1.2 cm. No flow.\nImpression: benign.")
    assert [s["text"] for s in english] == ["Oval nodule 1.2 cm.", "No flow.", "Impression: benign."]
