"""Admin pages for batch batches: upload a .zip → import job; start an export → download when done.

Thin doors onto ``importing`` and ``exporting``. Only dataset admins (and staff) reach them: an outsider
gets 404, a member without the admin role 403, through ``selectors.dataset_get_for_user``. The job pages
poll one row through htmx (``_job_progress.html``) until the job is done.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from annotation import selectors
from annotation.permissions import ADMIN_ROLES

from .exporting import FORMATS, STATUSES, ExportError, export_job_create, split_parse
from .importing import import_job_create, problem_text
from .models import ExportJob, ImportJob

ADMIN = ADMIN_ROLES
RECENT = 20
PROBLEMS_SHOWN = 500


def _job_for_user(model, *, user, job_id: int):
    job = model.objects.select_related("dataset").filter(pk=job_id).first()
    if job is None:
        raise Http404("No such job.")
    selectors.dataset_get_for_user(user=user, dataset_id=job.dataset_id, roles=ADMIN)
    return job


def _banner(text: str) -> list[int] | None:
    if not text.strip():
        return None
    parts = [int(part) for part in text.split(",")]
    if len(parts) != 4 or min(parts) < 0 or parts[2] == 0 or parts[3] == 0:
        raise ValueError
    return parts


@login_required
@require_http_methods(["GET", "POST"])
def dataset_import(request, dataset_id: int):
    dataset = selectors.dataset_get_for_user(user=request.user, dataset_id=dataset_id, roles=ADMIN)
    errors: list[str] = []
    if request.method == "POST":
        upload = request.FILES.get("batch")
        params = {"format": request.POST.get("format") or "manifest",
                  "author": (request.POST.get("author") or "import").strip()[:64]}
        if upload is None or not upload.name.lower().endswith(".zip"):
            errors.append("Choose a .zip file holding manifest.jsonl, DICOM files or a COCO .json.")
        if params["format"] not in ("manifest", "coco"):
            errors.append("Unknown format.")
        try:
            params["frame_step"] = max(1, int(request.POST.get("frame_step") or 1))
            params["banner"] = _banner(request.POST.get("banner") or "")
        except ValueError:
            errors.append("Frame step must be a whole number; the banner must be X,Y,WIDTH,HEIGHT in pixels.")
        if not errors:
            job = import_job_create(dataset=dataset, user=request.user, upload=upload, params=params)
            return redirect("batches:import-job", job_id=job.pk)
    jobs = ImportJob.objects.filter(dataset=dataset).order_by("-created_at")[:RECENT]
    return render(request, "batches/job_import.html", {"dataset": dataset, "jobs": jobs, "errors": errors},
                  status=400 if errors else 200)


@login_required
@require_http_methods(["GET", "POST"])
def dataset_export(request, dataset_id: int):
    dataset = selectors.dataset_get_for_user(user=request.user, dataset_id=dataset_id, roles=ADMIN)
    errors: list[str] = []
    if request.method == "POST":
        params = {"format": request.POST.get("format", ""), "status": request.POST.get("status") or "adjudicated",
                  "split": (request.POST.get("split") or "").strip() or None,
                  "seed": request.POST.get("seed") or 42, "include_images": bool(request.POST.get("include_images")),
                  "keep_names": bool(request.POST.get("keep_names"))}
        try:
            if params["split"]:
                split_parse(params["split"])
            params["seed"] = int(params["seed"])
            job = export_job_create(dataset=dataset, user=request.user, params=params)
        except ExportError as error:
            errors.append(str(error))
        except ValueError:
            errors.append("The seed must be a whole number.")
        else:
            return redirect("batches:export-job", job_id=job.pk)
    jobs = ExportJob.objects.filter(dataset=dataset).order_by("-created_at")[:RECENT]
    return render(request, "batches/job_export.html", {
        "dataset": dataset, "jobs": jobs, "errors": errors, "formats": FORMATS, "statuses": STATUSES,
    }, status=400 if errors else 200)


def _job_page(request, job, kind: str):
    shown = (job.errors or [])[:PROBLEMS_SHOWN]
    problems = [{"level": p.get("level", "error"), "text": problem_text(p)} for p in shown]
    context = {"job": job, "kind": kind, "percent": round(job.progress * 100), "problems": problems,
               "more_problems": max(0, len(job.errors or []) - PROBLEMS_SHOWN),
               "counts": sorted((job.counts or {}).items()),
               "finished": job.status in (job.Status.DONE, job.Status.FAILED)}
    template = "batches/_job_progress.html" if request.htmx else "batches/job_detail.html"
    return render(request, template, context)


@login_required
def import_job_detail(request, job_id: int):
    return _job_page(request, _job_for_user(ImportJob, user=request.user, job_id=job_id), "import")


@login_required
def export_job_detail(request, job_id: int):
    return _job_page(request, _job_for_user(ExportJob, user=request.user, job_id=job_id), "export")


@login_required
def export_job_download(request, job_id: int):
    """The archive, for the dataset's admins only; never a public media URL."""
    job = _job_for_user(ExportJob, user=request.user, job_id=job_id)
    if job.status != ExportJob.Status.DONE or not job.output:
        raise Http404("This export has no file (yet).")
    return FileResponse(job.output.open("rb"), as_attachment=True, filename=job.output.name.rsplit("/", 1)[-1])
