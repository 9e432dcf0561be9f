"""Admin pages for batches: upload a .zip → import job; start an export → download when done.

Thin doors onto ``importing``, ``exporting`` and ``selectors``. Only dataset admins (and staff) reach
them: an outsider gets 404, a member without the admin role 403, through
``selectors.dataset_get_for_user``. The job pages poll one row through htmx (``_job_progress.html``)
until the job is done; the export form asks for its preview (``_export_preview.html``) on every change.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from annotation import selectors as annotation_selectors
from annotation.permissions import ADMIN_ROLES

from . import selectors
from .exporting import ExportError, export_job_create
from .forms import LEVEL_LABELS, ExportForm, ImportForm, count_rows
from .importing import import_job_create
from .models import ExportJob, ImportJob

RECENT = 20
PROBLEMS_SHOWN = 500


def _admin_dataset(request, dataset_id: int):
    return annotation_selectors.dataset_get_for_user(user=request.user, dataset_id=dataset_id, roles=ADMIN_ROLES)


def _job_for_user(model, *, user, job_id: int):
    job = model.objects.select_related("dataset", "created_by").filter(pk=job_id).first()
    if job is None:
        raise Http404("No such job.")
    annotation_selectors.dataset_get_for_user(user=user, dataset_id=job.dataset_id, roles=ADMIN_ROLES)
    return job


@login_required
@require_http_methods(["GET", "POST"])
def dataset_import(request, dataset_id: int):
    dataset = _admin_dataset(request, dataset_id)
    form = ImportForm(*((request.POST, request.FILES) if request.method == "POST" else ()))
    if request.method == "POST" and form.is_valid():
        job = import_job_create(dataset=dataset, user=request.user, upload=form.cleaned_data["batch"],
                                params=form.params())
        return redirect("batches:import-job", job_id=job.pk)
    jobs = ImportJob.objects.filter(dataset=dataset).select_related("created_by").order_by("-created_at")[:RECENT]
    return render(request, "batches/job_import.html", {"dataset": dataset, "jobs": jobs, "form": form},
                  status=400 if form.is_bound else 200)


def _preview(dataset, form: ExportForm, images_by_status: dict[str, int]) -> selectors.ExportPreview | None:
    """The preview of what the form asks for; None while the form holds an error the export would refuse."""
    form.is_valid()
    data = form.cleaned_data
    if "split" not in data:
        return None
    return selectors.export_preview(
        dataset=dataset, status=data.get("status") or form.default_status, format=data.get("format") or "coco",
        split=data["split"], seed=42 if data.get("seed") is None else data["seed"],
        include_images=bool(data.get("include_images")), images_by_status=images_by_status)


@login_required
@require_http_methods(["GET", "POST"])
def dataset_export(request, dataset_id: int):
    dataset = _admin_dataset(request, dataset_id)
    images_by_status = selectors.export_images_by_status(dataset=dataset)
    default_status = selectors.export_status_default(images_by_status=images_by_status)
    form = ExportForm(request.POST if request.method == "POST" else None, default_status=default_status,
                      images_by_status=images_by_status)
    if request.method == "POST" and form.is_valid():
        try:
            job = export_job_create(dataset=dataset, user=request.user, params=form.params())
        except ExportError as error:
            form.add_error(None, str(error))
        else:
            return redirect("batches:export-job", job_id=job.pk)
    preview = _preview(dataset, form, images_by_status) if form.is_bound else selectors.export_preview(
        dataset=dataset, status=default_status, images_by_status=images_by_status)
    jobs = ExportJob.objects.filter(dataset=dataset).select_related("created_by").order_by("-created_at")[:RECENT]
    return render(request, "batches/job_export.html", {
        "dataset": dataset, "jobs": jobs, "form": form, "preview": preview, "default_status": default_status,
    }, status=400 if form.is_bound else 200)


@login_required
@require_GET
def export_preview(request, dataset_id: int):
    """The export form's preview for the values it holds now (asked by htmx on every change)."""
    dataset = _admin_dataset(request, dataset_id)
    images_by_status = selectors.export_images_by_status(dataset=dataset)
    default_status = selectors.export_status_default(images_by_status=images_by_status)
    form = ExportForm(request.GET, default_status=default_status)
    return render(request, "batches/_export_preview.html", {
        "dataset": dataset, "form": form, "preview": _preview(dataset, form, images_by_status),
        "default_status": default_status})


def _job_page(request, job, kind: str):
    context = {"job": job, "kind": kind, "pace": selectors.job_pace(job=job), "counts": count_rows(job.counts),
               "finished": job.status in (job.Status.DONE, job.Status.FAILED)}
    if kind == "import":
        level = request.GET.get("level") if request.GET.get("level") in LEVEL_LABELS else ""
        text = (request.GET.get("q") or "")[:200]
        problems = selectors.import_problems(job=job, level=level, text=text)
        context |= {"problems": problems[:PROBLEMS_SHOWN], "shown_count": len(problems),
                    "more_problems": max(0, len(problems) - PROBLEMS_SHOWN),
                    "any_problems": bool(job.errors), "level": level, "q": text,
                    "failed_lines": len(selectors.import_failed_line_numbers(job=job))}
    template = "batches/_job_progress.html" if request.htmx else "batches/job_detail.html"
    return render(request, template, context)


@login_required
@require_GET
def import_job_detail(request, job_id: int):
    return _job_page(request, _job_for_user(ImportJob, user=request.user, job_id=job_id), "import")


@login_required
@require_GET
def export_job_detail(request, job_id: int):
    return _job_page(request, _job_for_user(ExportJob, user=request.user, job_id=job_id), "export")


@login_required
@require_GET
def import_report_csv(request, job_id: int):
    """The row report (filtered as the page shows it) as CSV, with a BOM so that spreadsheets read the
    Chinese in it as UTF-8."""
    job = _job_for_user(ImportJob, user=request.user, job_id=job_id)
    level = request.GET.get("level") if request.GET.get("level") in LEVEL_LABELS else ""
    problems = selectors.import_problems(job=job, level=level, text=(request.GET.get("q") or "")[:200])
    response = HttpResponse("\ufeff" + selectors.import_report_csv(problems=problems),
                            content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="import-{job.pk}-report.csv"'
    return response


@login_required
@require_GET
def import_failed_lines(request, job_id: int):
    """The manifest lines that failed, as uploaded: fix them, put the file in a batch as manifest.jsonl
    beside the images, and import again."""
    job = _job_for_user(ImportJob, user=request.user, job_id=job_id)
    if not selectors.import_failed_line_numbers(job=job):
        raise Http404("This import has no failed manifest lines.")
    response = StreamingHttpResponse(selectors.import_failed_lines(job=job), content_type="application/jsonl")
    response["Content-Disposition"] = f'attachment; filename="import-{job.pk}-failed-manifest.jsonl"'
    return response


@login_required
@require_GET
def export_job_download(request, job_id: int):
    """The archive, for the dataset's admins only; never a public media URL."""
    job = _job_for_user(ExportJob, user=request.user, job_id=job_id)
    if job.status != ExportJob.Status.DONE or not job.output:
        raise Http404("This export has no file (yet).")
    return FileResponse(job.output.open("rb"), as_attachment=True, filename=job.output.name.rsplit("/", 1)[-1])
