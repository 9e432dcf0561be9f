"""Server time of the dataset dashboard (agreement and progress) at US-SEMANTIC scale.

    .venv/bin/python benchmarks/dashboard.py                                   # 20,000 images, ~55,000 regions
    .venv/bin/python benchmarks/dashboard.py --images 364000 --regions 1000000  # the full scale

Measures, in one process (Django's test client: middleware, session auth, view, template, SQL):
- the agreement snapshot: ``adjudication.dataset_metrics_refresh`` (what the task runs: pairs every
  image's outlines across readers, kappa/alpha per attribute) — seconds, reported once;
- ``GET /datasets/<id>/dashboard/`` with a **warm cache**: the heavy aggregates (images per status,
  submissions per day) cached by the task, disagreement counts live from their indexes, the snapshot
  read from its row;
- the same page with the cache emptied before every request, so every aggregate is **computed by the
  database** on the request (what the first view after a cache expiry costs);
and prints median and p95 of each (target: p95 under 1 s).

Runs on PostgreSQL only, in its own database (``--database-url``, default
``postgres://postgres@127.0.0.1:5432/sonoalign_bench_dashboard``, created and migrated if missing).
Rows go in with ``COPY`` (images, assignments, regions) and ``bulk_create`` (studies, disagreements),
once per scale; re-runs reuse them.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/sonoalign_bench_dashboard"
READERS = 10
IMAGES_PER_STUDY = 3
READ_SHARE = 0.6
BASE = {"diagnosis": "nodule", "body_system_level": "breast_and_axilla", "organ_level": "breast"}
ECHO = ["hypoechoic", "isoechoic", "hyperechoic", "anechoic"]
SHAPES = ["oval", "round", "irregular"]


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--regions", type=int, default=None, help="default: 2.75 per image (1M for 364k)")
    parser.add_argument("--requests", type=int, default=100, help="timed requests per variant")
    parser.add_argument("--reuse-snapshot", action="store_true", help="keep the stored agreement snapshot")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    return parser.parse_args()


def _database_ensure(url: str) -> None:
    """Create the benchmark database if missing, so a run never touches the development data."""
    from urllib.parse import urlparse

    import psycopg

    parts = urlparse(url)
    name = parts.path.lstrip("/")
    with psycopg.connect(parts._replace(path="/postgres").geturl(), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def _copy(table: str, columns: list[str], rows) -> None:
    """Stream rows into ``table`` with COPY (tab-separated text; JSON and text here hold no tabs)."""
    from django.db import connection

    buffer = io.StringIO()
    for row in rows:
        buffer.write("\t".join("\\N" if v is None else str(v) for v in row) + "\n")
    buffer.seek(0)
    with connection.cursor() as cursor, cursor.cursor.copy(
            f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        while chunk := buffer.read(1 << 20):
            copy.write(chunk)


def _seed(*, images: int, regions: int) -> str:
    """Studies of three images; the first 60 % of images read by two of ten readers (submitted over
    the last 60 days), ``regions`` outlines spread over them — the second reader's outline shifted a
    few pixels and, for one lesion in seven, a different echogenicity; one open or closed
    disagreement per differing lesion; a tenth of the read images adjudicated."""
    from django.contrib.auth import get_user_model
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage
    from django.db import connection, transaction
    from django.utils import timezone

    from alignment.models import Disagreement
    from annotation import services
    from annotation.models import Dataset, Image, Study
    from tests.factories import png_bytes

    name = f"bench-dashboard-{images}-{regions}"
    if Dataset.objects.filter(name=name).exists():
        print(f"reusing dataset {name}")
        return name
    started = time.perf_counter()
    users = get_user_model().objects
    readers = [users.filter(username=f"bench-reader-{i}").first() or users.create_user(f"bench-reader-{i}")
               for i in range(READERS)]
    reviewer = users.filter(username="bench-reviewer").first() or users.create_user("bench-reviewer")
    dataset = services.dataset_create(name=name, annotators_per_image=2)
    for reader in readers:
        services.membership_add(dataset=dataset, user=reader, role="annotator")
    services.membership_add(dataset=dataset, user=reviewer, role="reviewer")
    file_name = default_storage.save("bench/placeholder.png", ContentFile(png_bytes(800, 600, 90)))
    now = timezone.now()
    rng = random.Random(42)
    with transaction.atomic():
        studies = Study.objects.bulk_create(
            [Study(dataset=dataset, accession=f"D-{i:07d}", patient=f"P-{i % 50000:05d}", body_part="breast")
             for i in range((images + IMAGES_PER_STUDY - 1) // IMAGES_PER_STUDY)], batch_size=10_000)
        read_until = int(images * READ_SHARE)
        status = ["annotated" if i < read_until else "new" for i in range(images)]
        for i in range(0, read_until, 10):
            status[i] = "adjudicated"
        _copy("annotation_image", ["study_id", "position", "file", "thumbnail", "original_name", "width", "height",
                                   "sha256", "pixel_spacing_x_mm", "pixel_spacing_y_mm", "laterality", "view",
                                   "body_marker", "frame_index", "study_instance_uid", "series_instance_uid",
                                   "sop_instance_uid", "status", "created_at"],
              ((studies[i // IMAGES_PER_STUDY].pk, i % IMAGES_PER_STUDY, file_name, "", "", 800, 600, f"{dataset.pk:08x}{i:056x}",
                0.08, 0.08, "right", "", "", 0, "", "", "", status[i], now.isoformat()) for i in range(images)))
        image_ids = list(Image.objects.filter(study__dataset=dataset).order_by("id").values_list("id", flat=True))
        print(f"  {len(studies)} studies, {len(image_ids)} images in {time.perf_counter() - started:.0f} s")

        read = image_ids[:read_until]
        submitted_at = {image_id: (now - timedelta(days=rng.randrange(60), minutes=rng.randrange(1440))).isoformat()
                        for image_id in read}
        _copy("annotation_assignment", ["image_id", "annotator_id", "status", "created_at", "started_at", "submitted_at"],
              ((image_id, readers[(index + offset) % READERS].pk,
                "submitted" if image_id in submitted_at else "assigned", now.isoformat(),
                submitted_at.get(image_id), submitted_at.get(image_id))
               for index, image_id in enumerate(image_ids) for offset in (0, 1)))
        with connection.cursor() as cursor:
            cursor.execute("SELECT a.id, a.image_id, a.annotator_id FROM annotation_assignment a "
                           "JOIN annotation_image i ON i.id = a.image_id JOIN annotation_study s ON s.id = i.study_id "
                           "WHERE s.dataset_id = %s AND a.status = 'submitted' ORDER BY a.image_id, a.id", [dataset.pk])
            assignments = cursor.fetchall()
        print(f"  {len(image_ids) * 2} assignments in {time.perf_counter() - started:.0f} s")

        per_image = regions / max(1, len(read) * 2)
        differing: list[tuple[int, int, str, str]] = []

        def region_rows():
            made = 0
            for k in range(0, len(assignments), 2):
                (a1, image_id, r1), (a2, _, r2) = assignments[k], assignments[k + 1]
                lesions = int(per_image) + (rng.random() < per_image - int(per_image))
                for lesion in range(lesions):
                    if made >= regions:
                        return
                    x, y, w, h = 60 + 180 * lesion, 200, 120, 90
                    echo, shape = rng.choice(ECHO), rng.choice(SHAPES)
                    other_echo = rng.choice(ECHO) if rng.random() < 1 / 7 else echo
                    if other_echo != echo:
                        differing.append((image_id, lesion, echo, other_echo))
                    shift = rng.uniform(0, 12)
                    for assignment, reader, dx, value in ((a1, r1, 0.0, echo), (a2, r2, shift, other_echo)):
                        points = [[x + dx, y], [x + w + dx, y], [x + w + dx, y + h], [x + dx, y + h]]
                        attributes = {**BASE, "echogenicity": value, "shape": shape}
                        yield (image_id, reader, assignment, "reader", "", "", "polygon", json.dumps({"points": points}),
                               "lesion", f"L{lesion + 1}", json.dumps(attributes), json.dumps([x + dx, y, w, h]),
                               w * h, 9.6, 7.2, w * h * 0.0064, 1, "f", None, now.isoformat(), now.isoformat())
                        made += 1

        _copy("annotation_region", ["image_id", "author_id", "assignment_id", "source", "source_author", "source_id",
                                    "shape", "geometry", "label", "lesion_key", "attributes", "bbox", "area_px",
                                    "long_axis_mm", "short_axis_mm", "area_mm2", "version", "is_deleted", "deleted_at",
                                    "created_at", "updated_at"], region_rows())
        print(f"  regions in {time.perf_counter() - started:.0f} s")
        study_of = dict(Image.objects.filter(pk__in=[d[0] for d in differing]).values_list("id", "study_id"))
        statuses = ["open", "open", "resolved", "resolved", "dismissed"]
        Disagreement.objects.bulk_create([
            Disagreement(dataset=dataset, study_id=study_of[image_id], image_id=image_id, kind="reader_vs_reader",
                         attribute="echogenicity", values={"a": [a], "b": [b]}, fingerprint=f"{image_id}:{lesion}",
                         input_hash="bench", status=(st := statuses[i % len(statuses)]),
                         resolved_by=reviewer if st != "open" else None,
                         resolved_at=(now - timedelta(days=i % 30)) if st != "open" else None)
            for i, (image_id, lesion, a, b) in enumerate(differing)], batch_size=10_000)
        print(f"  {len(differing)} disagreements in {time.perf_counter() - started:.0f} s")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return name


def _time(client, url: str, count: int, before=None) -> list[float]:
    timings = []
    for i in range(count + 5):
        if before:
            before()
        started = time.perf_counter()
        response = client.get(url)
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise SystemExit(f"GET {url} answered {response.status_code}")
        if i >= 5:  # the first requests warm connections and template caches
            timings.append(elapsed)
    return timings


def main() -> None:
    args = _arguments()
    os.environ["DATABASE_URL"] = args.database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sonoalign.settings")
    _database_ensure(args.database_url)
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from annotation.models import Dataset, Region
    from review import adjudication

    if connection.vendor != "postgresql":
        raise SystemExit("this benchmark runs on PostgreSQL (give --database-url)")
    settings.DEBUG = False
    settings.ALLOWED_HOSTS = ["testserver"]
    call_command("migrate", verbosity=0)
    regions = args.regions if args.regions is not None else int(args.images * 1_000_000 / 364_000)
    name = _seed(images=args.images, regions=regions)
    dataset = Dataset.objects.get(name=name)
    print(f"scale: {args.images} images, {Region.objects.filter(image__study__dataset=dataset).count()} regions "
          f"in this dataset ({connection.settings_dict['NAME']})")

    from review.models import DatasetMetrics

    started = time.perf_counter()
    snapshot = DatasetMetrics.objects.filter(dataset=dataset).order_by("-computed_at").first() \
        if args.reuse_snapshot else None
    if snapshot is None:
        snapshot = adjudication.dataset_metrics_refresh(dataset_id=dataset.pk)
    print(f"agreement snapshot (the task): {snapshot.duration_s:.1f} s, "
          f"{snapshot.data['images_compared']} images compared, {snapshot.data['iou']['n']} outline pairs, "
          f"echogenicity κ {snapshot.data['reader_agreement']['echogenicity']['cohen_kappa']:.3f}")

    started = time.perf_counter()
    adjudication.dataset_progress_refresh(dataset=dataset)
    print(f"image-status and submissions aggregates (cached by the task): {time.perf_counter() - started:.2f} s")
    client = Client()
    client.force_login(get_user_model().objects.get(username="bench-reviewer"))
    url = f"/datasets/{dataset.pk}/dashboard/"
    results = {
        "dashboard, warm cache": _time(client, url, args.requests),
        "dashboard, aggregates by the database": _time(
            client, url, args.requests, before=lambda: adjudication.dashboard_cache_clear(dataset_id=dataset.pk)),
    }
    print(f"{'request':40} {'median ms':>10} {'p95 ms':>8}")
    for label, timings in results.items():
        print(f"{label:40} {statistics.median(timings):10.1f} {_percentile(timings, 0.95):8.1f}")
    print("target: p95 < 1000 ms")


if __name__ == "__main__":
    main()
