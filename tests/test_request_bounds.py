"""Hostile input is the client's mistake, answered 400 (or 413) as JSON on the API, never a 500: deep
JSON, numbers no field can hold, superscript and 64-bit-overflowing ids in queries, bodies over the
upload limit, unknown fields; and a form's ``next`` never sends a user to another site."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from alignment.models import Disagreement
from tests.factories import SQUARE, assignment_make, dataset_make, image_make, study_make, user_make

pytestmark = pytest.mark.django_db

DEEP = "[" * 100_000 + "]" * 100_000
HUGE_ID = "99999999999999999999"


@pytest.fixture
def world():
    reader, reviewer = user_make("reader"), user_make("reviewer")
    dataset = dataset_make(members={"annotator": [reader], "reviewer": [reviewer]})
    study = study_make(dataset)
    image = image_make(study)
    assignment_make(image, reader)
    clients = {}
    for name, user in (("reader", reader), ("reviewer", reviewer)):
        clients[name] = Client(raise_request_exception=False)
        clients[name].force_login(user)
    return {"dataset": dataset, "study": study, "image": image, **clients}


def _json_400(response, status: int = 400):
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json")
    return response.json()


@pytest.mark.parametrize("body", [
    DEEP,
    '{"image": 1, "shape": "polygon", "geometry": ' + "{\"a\": " * 40 + "1" + "}" * 40 + "}",
], ids=["100000-deep", "40-deep"])
def test_json_nested_without_end_is_a_400(world, body):
    _json_400(world["reader"].post("/api/v1/regions/", body, content_type="application/json"))


@pytest.mark.parametrize("number", ["1" + "0" * 400, "1e400", "-1" + "0" * 30], ids=["10**400", "1e400", "-10**30"])
def test_numbers_no_field_can_hold_are_a_400_anywhere_in_the_body(world, number):
    body = ('{"image": ' + str(world["image"].pk) + ', "shape": "point", "geometry": {"points": [[1, 1]]}, '
            '"attributes": {"size": ' + number + "}}")
    _json_400(world["reader"].post("/api/v1/regions/", body, content_type="application/json"))


@pytest.mark.parametrize("url", [
    "/api/v1/queue/?dataset=²", f"/api/v1/queue/?dataset={HUGE_ID}", f"/api/v1/queue/next/?dataset={HUGE_ID}",
    "/api/v1/queue/?status=everything", f"/api/v1/regions/?image={HUGE_ID}", "/api/v1/regions/?image=²",
])
def test_api_query_parameters_out_of_bounds_are_a_400(world, url):
    _json_400(world["reader"].get(url))


def test_alignment_image_parameter_out_of_bounds_is_a_400(world):
    _json_400(world["reviewer"].get(f"/api/v1/studies/{world['study'].pk}/alignment/?image={HUGE_ID}"))


def test_delete_with_a_version_past_64_bits_is_a_400(world):
    region = world["reader"].post("/api/v1/regions/", {"image": world["image"].pk, "shape": "polygon",
                                                       "geometry": SQUARE}, content_type="application/json").json()
    _json_400(world["reader"].delete(f"/api/v1/regions/{region['id']}/?version={HUGE_ID}"))


@pytest.mark.parametrize("query", [f"annotator={HUGE_ID}", "dataset=²", f"dataset={HUGE_ID}", "annotator=¹²"])
def test_review_queue_filters_out_of_bounds_are_dropped_not_a_500(world, query):
    response = world["reviewer"].get(f"/review/?{query}")
    assert response.status_code == 200


@pytest.fixture
def disagreement(world):
    return Disagreement.objects.create(
        dataset=world["dataset"], study=world["study"], image=world["image"], kind="report_vs_annotation",
        attribute="echogenicity", values={"report": ["hypoechoic"], "annotation": ["isoechoic"]},
        fingerprint="bounds", input_hash="x")


@pytest.mark.parametrize("fields", [
    {"action": "edit_outline", "shape": "polygon", "geometry": DEEP},
    {"action": "edit_outline", "shape": "polygon", "geometry": '{"points": [[1, 1], [1%s, 1], [1, 50]]}' % ("0" * 400)},
    {"action": "accept_report", "image": HUGE_ID},
    {"action": "accept_report", "image": "²"},
], ids=["deep-geometry", "huge-coordinate", "huge-image-id", "superscript-image-id"])
def test_the_reviewers_resolve_form_refuses_bad_geometry_and_ids_with_a_message(world, disagreement, fields):
    response = world["reviewer"].post(reverse("review:resolve", args=[disagreement.pk]), fields)
    assert response.status_code == 302
    disagreement.refresh_from_db()
    assert disagreement.status == "open"


def test_a_body_over_the_upload_limit_is_a_json_413_on_the_api(world, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    body = '{"image": 1, "shape": "point", "geometry": {"points": [[1, 1]]}, "label": "%s"}' % ("x" * 20_000)
    detail = _json_400(world["reader"].post("/api/v1/regions/", body, content_type="application/json"), 413)
    assert "too large" in detail["detail"]


def test_too_many_form_fields_is_a_json_400_on_the_api(world, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 10
    body = "&".join(f"f{i}=1" for i in range(50))
    _json_400(world["reader"].post("/api/v1/regions/", body, content_type="application/x-www-form-urlencoded"))


def test_patch_with_an_unknown_field_is_a_400_and_changes_nothing(world):
    client = world["reader"]
    region = client.post("/api/v1/regions/", {"image": world["image"].pk, "shape": "polygon", "geometry": SQUARE},
                         content_type="application/json").json()
    body = _json_400(client.patch(f"/api/v1/regions/{region['id']}/", {"version": 1, "lable": "cyst"},
                                  content_type="application/json"))
    assert "lable" in body
    after = client.get(f"/api/v1/regions/{region['id']}/").json()
    assert after["version"] == 1 and after["label"] == region["label"]


@pytest.mark.parametrize("target", ["https://evil.example/phish", "//evil.example", "/\\evil.example",
                                    "javascript:alert(1)"])
def test_image_confirm_never_redirects_off_site(world, target):
    response = world["reviewer"].post(reverse("review:image-confirm", args=[world["image"].pk]), {"next": target})
    assert response.status_code == 302
    assert response["Location"] == reverse("review:queue")


def test_image_confirm_returns_to_a_local_next(world):
    back = reverse("review:disagreement", args=[1]) + "?kind=size_mismatch"
    response = world["reviewer"].post(reverse("review:image-confirm", args=[world["image"].pk]), {"next": back})
    assert response["Location"] == back
