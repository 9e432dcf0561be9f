"""Pages of the project as a whole: the home page, a dataset's overview (which gathers what every app
knows of the dataset) and the health check. This is the top layer: it may ask every app."""

from __future__ import annotations

import io

from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.core.files.storage import default_storage
from django.db import connection
from django.db.models import Count
from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from alignment.models import AlignmentRun
from alignment.services import alignment_run_refresh, disagreement_counts
from annotation import permissions, selectors
from annotation.models import Image


@login_required
def home(request):
    datasets = []
    for dataset in selectors.datasets_for_user(user=request.user).annotate(studies_count=Count("studies")):
        roles = selectors.dataset_roles(user=request.user, dataset_id=dataset.pk)
        datasets.append({"dataset": dataset, "roles": sorted(roles)})
    counts = selectors.queue_counts(user=request.user)
    return render(request, "sonoalign/home.html", {
        "datasets": datasets, "queue_counts": counts,
        "may_create_datasets": selectors.user_may_create_datasets(user=request.user),
    })


@login_required
def dataset_detail(request, dataset_id: int):
    dataset = selectors.dataset_get_for_user(user=request.user, dataset_id=dataset_id)
    roles = selectors.dataset_roles(user=request.user, dataset_id=dataset.pk)
    status_counts = {
        row["status"]: row["n"]
        for row in Image.objects.filter(study__dataset=dataset).values("status").annotate(n=Count("id"))
    }
    latest = AlignmentRun.objects.filter(dataset=dataset).order_by("-id").first()
    run = alignment_run_refresh(run_id=latest.pk) if latest else None
    may_administer = permissions.may_administer(roles)
    reference_problem_count, reference_problems = (
        selectors.images_with_reference_problems(dataset=dataset) if may_administer else (0, []))
    return render(request, "sonoalign/dataset.html", {
        "dataset": dataset, "roles": sorted(roles), "status_counts": status_counts,
        "may_review": permissions.may_review(roles), "may_administer": may_administer,
        "reference_problem_count": reference_problem_count, "reference_problems": reference_problems,
        "image_total": sum(status_counts.values()), "run": run,
        "counts": disagreement_counts(dataset=dataset) if run else None,
    })


def _check(name: str, probe) -> dict:
    try:
        detail = probe()
        return {"name": name, "ok": True, "detail": detail or "ok"}
    except Exception as error:  # noqa: BLE001 — a health probe reports every failure as data
        return {"name": name, "ok": False, "detail": f"{type(error).__name__}: {error}"[:300]}


def _database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return connection.vendor


def _broker() -> str:
    from sonoalign.celery import app

    if app.conf.task_always_eager:
        return "eager (tasks run in-process)"

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
        return conn.as_uri()  # kombu masks the password


# The storage probe writes, reads and deletes a file: on object storage that is three billed requests
# and a write per probe, so its answer is kept this long (in the shared cache, for every process).
STORAGE_PROBE_SECONDS = 60
STORAGE_PROBE_KEY = "sonoalign:healthz:storage"


def _storage_write_read() -> str:
    name = default_storage.save("healthz/probe.txt", io.BytesIO(b"ok"))
    try:
        with default_storage.open(name) as handle:
            handle.read()
    finally:
        default_storage.delete(name)
    return type(default_storage).__name__


def _storage_check() -> dict:
    check = cache.get(STORAGE_PROBE_KEY)
    if check is None:
        check = _check("storage", _storage_write_read)
        cache.set(STORAGE_PROBE_KEY, check, STORAGE_PROBE_SECONDS)
    return check


@require_GET
@never_cache
def healthz(request):
    """Database, broker and storage status; 200 when all are usable, else 503. The storage answer may be
    up to ``STORAGE_PROBE_SECONDS`` old."""
    checks = [_check("database", _database), _check("broker", _broker), _storage_check()]
    ok = all(check["ok"] for check in checks)
    return JsonResponse(
        {"status": "ok" if ok else "error", "checks": {c["name"]: c for c in checks}}, status=200 if ok else 503
    )
