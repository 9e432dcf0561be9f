"""Export speed and memory against PostgreSQL's own COPY floor; import rate with thumbnails.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/sonoalign CELERY_BROKER_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python benchmarks/export.py --images 10000 [--images 100000 --images 364000] [--import-images 300] \\
        [--repeat 3] [--python-writers]

For each scale it builds a throw-away database (``<name>_bench``, dropped at the end) holding that many
images with about three polygon regions each, then measures:

- the floor: PostgreSQL ``COPY (SELECT ...) TO STDOUT`` of the same image, study, report and region rows,
  read to the end by the client;
- ``coco`` and ``jsonl`` exports (status all) to a temporary folder, each in a forked child whose peak
  resident memory (VmHWM, reset just before the export) is reported, so one run cannot inflate another;
  with ``--python-writers`` also the same exports by the Python writers (``database_records=False``, the
  path of SQLite and of the other formats), to see what building records in the database gains.

With ``--repeat N`` the floor and both exports are measured N times in turn, each ratio against the floor
measured just before it, and the medians are reported: on a shared machine a single run says little.

Then, with a broker, the import rate: a .zip of JPEGs with a manifest goes through an import job on a
real Celery worker with two processes, which also make the thumbnails; images/s counts until the last
thumbnail exists. Target: export time at most 3× the floor, memory flat as the dataset grows.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BENCH_SUFFIX = "_bench"


def _setup(base_url: str, media: str) -> str:
    parsed = urlparse(base_url)
    name = parsed.path.lstrip("/") + BENCH_SUFFIX
    import psycopg

    admin = urlunparse(parsed._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = urlunparse(parsed._replace(path=f"/{name}"))
    os.environ["DATABASE_URL"] = url
    os.environ["MEDIA_ROOT"] = media
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sonoalign.settings")
    os.environ["LOG_LEVEL"] = "WARNING"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return url


def _drop(base_url: str) -> None:
    import psycopg
    from django.db import connections

    connections.close_all()
    parsed = urlparse(base_url)
    with psycopg.connect(urlunparse(parsed._replace(path="/postgres")), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{parsed.path.lstrip("/") + BENCH_SUFFIX}" WITH (FORCE)')


def _populate(dataset, images: int) -> None:
    """Bulk rows: 4 images a study, 2 studies a patient, ≈3 regions an image (2, 3 or 4)."""
    from annotation.geometry import geometry_measures
    from annotation.models import Image, Region, Report, Study

    angles = [a * math.pi / 6 for a in range(12)]
    polygon = {"points": [[round(100 + 40 * math.cos(a), 2), round(100 + 30 * math.sin(a), 2)] for a in angles]}
    measures = geometry_measures("polygon", polygon, spacing_x_mm=0.08, spacing_y_mm=0.08)
    attributes = {"diagnosis": "nodule", "echogenicity": "hypoechoic", "organ_level": "thyroid_gland",
                  "body_system_level": "head_and_neck", "margins": "well_defined"}
    text = ("Thyroid: the right lobe holds a solid hypoechoic nodule of 1.2 x 0.8 cm with smooth margins. "
            "No suspicious cervical lymph nodes. ") * 2
    batch = 2000
    for start in range(0, images // 4 + (images % 4 > 0), batch):
        studies = Study.objects.bulk_create([
            Study(dataset=dataset, accession=f"ACC-{n:07d}", patient=f"P-{n // 2:07d}", body_part="thyroid")
            for n in range(start, min(start + batch, (images + 3) // 4))])
        Report.objects.bulk_create([Report(study=s, text=text, language="en") for s in studies])
        rows = []
        for study in studies:
            for position in range(4):
                digest = f"{study.pk:032x}{position:032x}"
                rows.append(Image(study=study, position=position, file=f"images/{digest[:2]}/{digest}.jpg",
                                  original_name=f"{study.accession}_{position}.jpg", width=640, height=480,
                                  sha256=digest, pixel_spacing_x_mm=0.08, pixel_spacing_y_mm=0.08,
                                  laterality="right"))
        created = Image.objects.bulk_create(rows)
        regions = [Region(image=image, source="import", source_author="bench", shape="polygon", geometry=polygon,
                          label="nodule", lesion_key=f"L{k}", attributes=attributes, bbox=measures.bbox,
                          area_px=measures.area_px, area_mm2=measures.area_mm2)
                   for image in created for k in range(2 + image.pk % 3)]
        Region.objects.bulk_create(regions, batch_size=5000)


def _copy_floor(dataset) -> float:
    from django.db import connection

    queries = [
        f"""COPY (SELECT s.id, s.accession, s.patient, r.text, r.language, r.version, i.* FROM annotation_study s
            LEFT JOIN annotation_report r ON r.study_id = s.id JOIN annotation_image i ON i.study_id = s.id
            WHERE s.dataset_id = {dataset.pk}) TO STDOUT""",
        f"""COPY (SELECT g.*, u.username FROM annotation_region g JOIN annotation_image i ON i.id = g.image_id
            JOIN annotation_study s ON s.id = i.study_id LEFT JOIN auth_user u ON u.id = g.author_id
            WHERE s.dataset_id = {dataset.pk} AND NOT g.is_deleted) TO STDOUT""",
    ]
    started = time.perf_counter()
    with connection.cursor() as cursor:
        raw = cursor.cursor
        for query in queries:
            with raw.copy(query) as copy:
                for _ in copy:
                    pass
    return time.perf_counter() - started


def _export_in_child(dataset_id: int, fmt: str, out: Path, database_records: bool = True) -> dict:
    """Fork: the child resets its peak-RSS mark, exports, and reports seconds and peak MiB."""
    from django.db import connections

    connections.close_all()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            from annotation.models import Dataset
            from batches.exporting import ExportOptions, export_run

            dataset = Dataset.objects.select_related("lexicon").get(pk=dataset_id)
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
            before = _status_kib("VmRSS")
            started = time.perf_counter()
            export_run(dataset=dataset, out=out, options=ExportOptions(format=fmt, status="all",
                                                                       database_records=database_records))
            seconds = time.perf_counter() - started
            result = {"seconds": seconds, "peak_mib": (_status_kib("VmHWM") - before) / 1024,
                      "bytes": sum(p.stat().st_size for p in out.rglob("*") if p.is_file())}
        except BaseException as error:  # the parent must hear about any failure
            result = {"error": f"{type(error).__name__}: {error}"}
        os.write(write, json.dumps(result).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as handle:
        data = handle.read()
    os.waitpid(pid, 0)
    return json.loads(data)


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def bench_export(scale: int, work: Path, repeat: int = 1, python_writers: bool = False) -> dict:
    from annotation import services

    dataset = services.dataset_create(name=f"bench-{scale}")
    started = time.perf_counter()
    _populate(dataset, scale)
    built = time.perf_counter() - started
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    floors: list[float] = []
    runs: dict[str, list[dict]] = {"coco": [], "jsonl": []}
    if python_writers:
        runs |= {"coco_python": [], "jsonl_python": []}
    for attempt in range(repeat):
        for name in runs:
            fmt = name.removesuffix("_python")
            floor = min(_copy_floor(dataset) for _ in range(2))
            floors.append(floor)
            out = work / f"{name}-{scale}-{attempt}"
            measured = _export_in_child(dataset.pk, fmt, out, database_records=fmt == name)
            if "error" in measured:
                raise RuntimeError(measured["error"])
            runs[name].append({**measured, "ratio": measured["seconds"] / floor})
            shutil.rmtree(out, ignore_errors=True)
    result = {"images": scale, "build_s": round(built, 1), "copy_floor_s": round(statistics.median(floors), 2),
              "repeat": repeat}
    for fmt, measured in runs.items():
        result[fmt] = {"seconds": round(statistics.median(m["seconds"] for m in measured), 2),
                       "ratio_to_floor": round(statistics.median(m["ratio"] for m in measured), 2),
                       "ratios": [round(m["ratio"], 2) for m in measured],
                       "peak_mib": round(max(m["peak_mib"] for m in measured), 1),
                       "mib_written": round(measured[0]["bytes"] / 2**20, 1)}
    from annotation.models import Region

    result["regions"] = Region.objects.filter(image__study__dataset=dataset).count()
    return result


def bench_import(count: int, work: Path, media: str) -> dict:
    """Import ``count`` JPEGs (640×480) through a job on a two-process worker that also thumbnails."""
    if not os.environ.get("CELERY_BROKER_URL"):
        return {"skipped": "no CELERY_BROKER_URL: the import rate needs a real worker"}
    import numpy as np
    from django.core.files.uploadedfile import SimpleUploadedFile
    from PIL import Image as PILImage

    from annotation import services
    from annotation.models import Image
    from batches.importing import import_job_create
    from batches.models import ImportJob
    from sonoalign.celery import app
    from tests.conftest import WorkerProcess

    rng = np.random.default_rng(0)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as handle:
        lines = []
        for n in range(count):
            buffer = io.BytesIO()
            PILImage.fromarray(rng.integers(0, 255, size=(480, 640), dtype=np.uint8)).save(buffer, "JPEG", quality=85)
            handle.writestr(f"images/{n:06d}.jpg", buffer.getvalue())
            lines.append(json.dumps({"study": f"IMP-{n // 4:06d}", "patient": f"P-{n // 8:06d}",
                                     "report": {"text": "Solid hypoechoic nodule."} if n % 4 == 0 else None,
                                     "images": [{"file": f"images/{n:06d}.jpg", "regions": [
                                         {"shape": "polygon", "points": [[10, 10], [200, 20], [100, 150]],
                                          "label": "nodule", "attributes": {"echogenicity": "hypoechoic"}}]}]}))
        handle.writestr("manifest.jsonl", "\n".join(line.replace(', "report": null', "") for line in lines) + "\n")
    queue = f"sonoalign-bench-{os.getpid()}"
    app.conf.task_always_eager = False
    app.conf.task_default_queue = queue
    env = {**os.environ, "CELERY_QUEUE": queue, "MEDIA_ROOT": media}
    worker = WorkerProcess(env=env, queue=queue, log_path=work / "celery-worker.log")
    worker.start(concurrency=2)
    try:
        dataset = services.dataset_create(name="bench-import")
        started = time.perf_counter()
        job = import_job_create(dataset=dataset, user=None, upload=SimpleUploadedFile("batch.zip", archive.getvalue()))
        images = Image.objects.filter(study__dataset=dataset)
        while True:
            job.refresh_from_db()
            if job.status == ImportJob.Status.FAILED:
                raise RuntimeError(job.errors)
            if job.status == ImportJob.Status.DONE and not images.filter(thumbnail="").exists():
                break
            time.sleep(0.2)
        seconds = time.perf_counter() - started
    finally:
        worker.stop()
    return {"images": images.count(), "seconds": round(seconds, 2), "images_per_s": round(images.count() / seconds, 1),
            "worker_processes": 2, "errors": len(job.errors)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, action="append", help="scale(s); default 10000")
    parser.add_argument("--import-images", type=int, default=300, help="images for the import rate (0: skip)")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    parser.add_argument("--repeat", type=int, default=1, help="measure floor and exports this many times (medians)")
    parser.add_argument("--python-writers", action="store_true",
                        help="also measure coco and jsonl written by the Python writers")
    args = parser.parse_args()
    base = os.environ.get("DATABASE_URL", "")
    if not base.startswith("postgres"):
        sys.exit("set DATABASE_URL to a PostgreSQL server (the benchmark makes and drops its own database)")
    with tempfile.TemporaryDirectory(prefix="sonoalign-bench-") as scratch:
        work = Path(scratch)
        media = str(work / "media")
        _setup(base, media)
        try:
            results = {"export": [bench_export(scale, work, args.repeat, args.python_writers)
                                  for scale in (args.images or [10_000])]}
            if args.import_images:
                results["import"] = bench_import(args.import_images, work, media)
        finally:
            if not args.keep:
                _drop(base)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
