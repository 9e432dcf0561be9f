"""Every route of ``sonoalign.urls`` × (anonymous, outsider, annotator, other annotator, reviewer,
dataset admin) × method, against an explicit table of expected statuses. The routes are read from the
URL conf, so a new route without a rule here fails ``test_every_route_has_a_rule``.

Each request runs inside a savepoint that is rolled back, so one role's POST cannot change what the
next role sees. Bodies are the smallest that a permitted caller would send; a 400 therefore means
"allowed in, input refused", never "refused for who you are"."""

from __future__ import annotations

import json

import pytest
from django.db import transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from alignment.models import Alignment, AlignmentRun, Disagreement, Sentence
from annotation import services
from annotation.models import Report
from batches.models import ExportJob, ImportJob
from tests.factories import SQUARE, assignment_make, dataset_make, image_make, study_make, user_make

ROLES = ("anonymous", "outsider", "annotator", "other_annotator", "reviewer", "admin")
# Django's own admin is guarded by Django (staff only); one rule covers its routes.
SKIPPED_NAMESPACES = {"admin"}


def _routes(patterns=None, prefix: str = "", namespace: str = ""):
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(pattern, URLResolver):
            if pattern.namespace in SKIPPED_NAMESPACES:
                continue
            inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
            yield from _routes(pattern.url_patterns, prefix + str(pattern.pattern), inner)
        elif isinstance(pattern, URLPattern):
            yield f"{namespace}{pattern.name}", prefix + str(pattern.pattern)


ROUTES = dict(_routes())

# Expected status per route and method, one per role in ROLES order.
def row(*statuses: int) -> dict[str, int]:
    return dict(zip(ROLES, statuses, strict=True))


RULES: dict[str, dict[str, dict[str, int]]] = {
    "home": {"GET": row(302, 200, 200, 200, 200, 200)},
    "healthz": {"GET": row(200, 200, 200, 200, 200, 200), "POST": row(405, 405, 405, 405, 405, 405)},
    "dataset": {"GET": row(302, 404, 200, 200, 200, 200)},
    "login": {"GET": row(200, 200, 200, 200, 200, 200)},
    "logout": {"POST": row(302, 302, 302, 302, 302, 302)},
    "set_language": {"POST": row(302, 302, 302, 302, 302, 302)},
    "javascript-catalog": {"GET": row(200, 200, 200, 200, 200, 200)},
    "api-me": {"GET": row(403, 200, 200, 200, 200, 200)},
    "api-regions": {"GET": row(403, 404, 200, 404, 200, 200), "POST": row(403, 404, 201, 404, 201, 201)},
    "api-region": {"GET": row(403, 404, 200, 404, 200, 200), "PATCH": row(403, 404, 200, 404, 403, 200),
                   "DELETE": row(403, 404, 204, 404, 403, 204)},
    "api-region-restore": {"POST": row(403, 404, 409, 404, 404, 409)},
    "api-region-history": {"GET": row(403, 404, 403, 404, 200, 200)},
    "api-outline-proposals": {"POST": row(403, 404, 400, 404, 400, 400)},
    "api-queue": {"GET": row(403, 200, 200, 200, 200, 200)},
    "api-queue-next": {"GET": row(403, 200, 200, 200, 200, 200)},
    "api-assignment": {"GET": row(403, 404, 200, 403, 200, 200)},
    "api-assignment-submit": {"POST": row(403, 404, 400, 403, 403, 403)},  # 400: its region lacks required attributes
    "api-study-alignment": {"GET": row(403, 404, 200, 200, 200, 200)},  # both readers have an image of the study
    "api-alignments": {"POST": row(403, 404, 403, 404, 201, 201)},
    "api-alignment": {"GET": row(403, 404, 403, 403, 200, 200), "DELETE": row(403, 404, 403, 403, 204, 204)},
    "api-region-report-findings": {"GET": row(403, 404, 200, 404, 200, 200)},
    "api-schema": {"GET": row(200, 200, 200, 200, 200, 200)},
    "api-docs": {"GET": row(200, 200, 200, 200, 200, 200)},
    "annotation:queue": {"GET": row(302, 200, 200, 200, 200, 200)},
    "annotation:queue-next": {"GET": row(302, 302, 302, 302, 302, 302)},
    "annotation:annotate": {"GET": row(302, 404, 200, 404, 200, 200)},
    "annotation:image-file": {"GET": row(302, 404, 200, 404, 200, 200)},
    "annotation:region-list": {"GET": row(302, 404, 200, 404, 200, 200)},
    "annotation:region-history": {"GET": row(302, 404, 403, 404, 200, 200)},
    "annotation:assignment-submit": {"POST": row(302, 404, 302, 403, 302, 302)},  # others: back with a message
    "annotation:manage-new": {"GET": row(302, 403, 403, 403, 403, 200)},
    "annotation:manage-members": {"GET": row(302, 404, 403, 403, 403, 200), "POST": row(302, 404, 403, 403, 403, 200)},
    "annotation:manage-member-roles": {"POST": row(302, 404, 403, 403, 403, 200)},
    "annotation:manage-work": {"GET": row(302, 404, 403, 403, 403, 200), "POST": row(302, 404, 403, 403, 403, 200)},
    "annotation:audit-trail": {"GET": row(302, 403, 403, 403, 403, 403)},
    "annotation:set-password": {"GET": row(200, 200, 200, 200, 200, 200)},
    "alignment:report-panel": {"GET": row(302, 404, 200, 404, 200, 200)},
    "alignment:alignment-decide": {"POST": row(302, 404, 400, 404, 400, 400)},
    "alignment:run-start": {"POST": row(302, 404, 403, 403, 403, 302)},
    "alignment:run-progress": {"GET": row(302, 404, 200, 200, 200, 200)},  # the dataset page polls it
    "batches:import": {"GET": row(302, 404, 403, 403, 403, 200), "POST": row(302, 404, 403, 403, 403, 400)},
    "batches:export": {"GET": row(302, 404, 403, 403, 403, 200), "POST": row(302, 404, 403, 403, 403, 400)},
    "batches:import-job": {"GET": row(302, 404, 403, 403, 403, 200)},
    "batches:export-job": {"GET": row(302, 404, 403, 403, 403, 200)},
    "batches:export-download": {"GET": row(302, 404, 403, 403, 403, 404)},
    "batches:export-preview": {"GET": row(302, 404, 403, 403, 403, 200)},
    "batches:import-report-csv": {"GET": row(302, 404, 403, 403, 403, 200)},
    "batches:import-failed-lines": {"GET": row(302, 404, 403, 403, 403, 404)},  # the job has no failed line
    "review:queue": {"GET": row(302, 403, 403, 403, 200, 200)},
    "review:disagreement": {"GET": row(302, 404, 403, 403, 200, 200)},
    "review:resolve": {"POST": row(302, 404, 403, 403, 302, 302)},
    "review:image-confirm": {"POST": row(302, 404, 403, 403, 302, 302)},
    "review:dashboard": {"GET": row(302, 404, 403, 403, 200, 200)},
    "review:dashboard-csv": {"GET": row(302, 404, 403, 403, 200, 200)},
    "review:dashboard-refresh": {"POST": row(302, 404, 403, 403, 302, 302)},
}


@pytest.fixture
def world(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    users = {role: user_make(role) for role in ROLES[1:]}
    dataset = dataset_make(members={"reviewer": [users["reviewer"]], "admin": [users["admin"]]})
    study = study_make(dataset, report="FINDINGS: A 10 mm hypoechoic mass in the right breast.")
    image = image_make(study)
    assignment = assignment_make(image, users["annotator"])
    assignment_make(image_make(study, position=1), users["other_annotator"])
    region = services.region_create(image=image, author=users["annotator"], assignment=assignment,
                                    shape="polygon", geometry=SQUARE, attributes={})
    report = Report.objects.get(study=study)
    sentence = Sentence.objects.filter(report=report).first() or Sentence.objects.create(
        report=report, report_version=1, pipeline_version="test", index=0, start=0, end=10, text="A 10 mm mass")
    alignment = Alignment.objects.create(sentence=sentence, image=image, region=region, score=1.0, source="manual",
                                         linked=True, created_by=users["reviewer"])
    disagreement = Disagreement.objects.create(
        dataset=dataset, study=study, image=image, kind="report_vs_annotation", attribute="echogenicity",
        values={"report": ["hypoechoic"], "annotation": ["isoechoic"]}, fingerprint="matrix", input_hash="x")
    ids = {"dataset_id": dataset.pk, "image_id": image.pk, "region_id": region.pk, "study_id": study.pk,
           "assignment_id": assignment.pk, "alignment_id": alignment.pk, "disagreement_id": disagreement.pk,
           "user_id": users["annotator"].pk, "uidb64": "MQ", "token": "welcome",
           "run_id": AlignmentRun.objects.create(dataset=dataset).pk}
    ids["job_id"] = {"import": ImportJob.objects.create(dataset=dataset, created_by=users["admin"]).pk,
                     "export": ExportJob.objects.create(dataset=dataset, created_by=users["admin"]).pk}
    bodies = {
        "api-regions": {"image": image.pk, "shape": "point", "geometry": {"points": [[5, 5]]}},
        "api-region": {"version": 1, "label": "cyst"},
        "api-outline-proposals": {"point": [-1, -1]},
        "api-alignments": {"sentence": sentence.pk, "region": region.pk, "linked": True},
    }
    return {"users": users, "ids": ids, "bodies": bodies}


def _path(name: str, route: str, ids: dict) -> str:
    path = "/" + route + ("?image={image_id}".format(**ids) if name == "api-regions" else "")
    for key, value in ids.items():
        if key == "job_id":
            value = value["export" if "export" in name else "import"]
        path = path.replace(f"<int:{key}>", str(value)).replace(f"<{key}>", str(value))
    return path


def _request(client: Client, method: str, name: str, path: str, body) -> int:
    if method == "DELETE":
        return client.delete(f"{path}?version=1").status_code
    if method == "POST" and "?" in path:
        path = path.split("?")[0]
    if method == "GET":
        return client.get(path).status_code
    send = getattr(client, method.lower())
    if name.startswith("api-"):
        return send(path, json.dumps(body or {}), content_type="application/json").status_code
    return send(path, body or {}).status_code


def test_every_route_has_a_rule():
    assert sorted(set(ROUTES) - set(RULES)) == [], "add the new routes to RULES with the status each role gets"
    assert sorted(set(RULES) - set(ROUTES)) == [], "RULES names routes that no longer exist"


@pytest.mark.django_db
@pytest.mark.parametrize("name", sorted(RULES))
def test_each_role_gets_the_status_the_rules_give(world, name):
    path = _path(name, ROUTES[name], world["ids"])
    seen, expected = {}, {}
    for method, statuses in RULES[name].items():
        for role in ROLES:
            client = Client()
            if role != "anonymous":
                client.force_login(world["users"][role])
            with transaction.atomic():
                seen[(method, role)] = _request(client, method, name, path, world["bodies"].get(name))
                transaction.set_rollback(True)
            expected[(method, role)] = statuses[role]
    observed = {method: "row(" + ", ".join(str(seen[(method, role)]) for role in ROLES) + ")" for method in RULES[name]}
    assert seen == expected, f"{path}: the roles ({', '.join(ROLES)}) got {observed}"
