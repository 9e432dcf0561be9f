"""The JSON API against its own OpenAPI schema (schemathesis): for every operation, a bounded,
deterministic set of generated requests, sent through the WSGI app as a signed-in annotator and again
as a reviewer with the path's ids pointing at real rows; no answer may be a 5xx or contradict the
schema."""

from __future__ import annotations

import json

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, Phase, settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from alignment.models import Alignment, Sentence
from annotation import services
from annotation.models import Report
from tests.factories import SQUARE, assignment_make, dataset_make, image_make, study_make, user_make

EXAMPLES_PER_OPERATION = 20
CHECKS = [not_a_server_error, response_schema_conformance]


def _openapi() -> dict:
    generated = SchemaGenerator().get_schema(request=None, public=True)
    return json.loads(OpenApiJsonRenderer().render(generated))


schema = schemathesis.openapi.from_dict(_openapi())
schema.app = get_wsgi_application()


@pytest.fixture(autouse=True)
def _connections_kept_open():
    """The WSGI app runs in the test's thread, inside its transaction: like Django's test client, keep
    the end of a request from closing the database connection (PostgreSQL would lose the test's
    transaction with it)."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def world(db):
    """An annotator with a region on an assigned image, a reviewer of the same dataset, a report
    sentence and a manual alignment: every path id of the API has a row to point at."""
    annotator, reviewer = user_make("annotator"), user_make("reviewer")
    dataset = dataset_make(members={"reviewer": [reviewer]})
    study = study_make(dataset, report="FINDINGS: A 10 mm hypoechoic mass in the right breast.")
    image = image_make(study)
    assignment = assignment_make(image, annotator)
    region = services.region_create(image=image, author=annotator, assignment=assignment, shape="polygon",
                                    geometry=SQUARE, attributes={})
    report = Report.objects.get(study=study)
    sentence = Sentence.objects.filter(report=report).first() or Sentence.objects.create(
        report=report, report_version=1, pipeline_version="test", index=0, start=0, end=10, text="A 10 mm mass")
    alignment = Alignment.objects.create(sentence=sentence, image=image, region=region, score=1.0,
                                         source="manual", linked=True, created_by=reviewer)
    return {
        "annotator": {"Authorization": f"Token {Token.objects.create(user=annotator).key}"},
        "reviewer": {"Authorization": f"Token {Token.objects.create(user=reviewer).key}"},
        "ids": {"region_id": region.pk, "image_id": image.pk, "study_id": study.pk,
                "assignment_id": assignment.pk, "alignment_id": alignment.pk},
    }


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, derandomize=True, deadline=None, database=None,
          phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
def test_the_api_answers_every_generated_request_without_5xx_and_as_documented(case, world):
    case.call_and_validate(headers=world["annotator"], checks=CHECKS)
    if case.path_parameters:
        case.path_parameters = {name: world["ids"].get(name, value) for name, value in case.path_parameters.items()}
        case.call_and_validate(headers=world["reviewer"], checks=CHECKS)
