"""Server time of the annotator's two hot requests at US-SEMANTIC scale, against a floor.

    .venv/bin/python benchmarks/annotation.py                       # 20,000 images, ~55,000 regions
    .venv/bin/python benchmarks/annotation.py --images 364000 --regions 1000000   # the full scale

Measures, in one run and one process (Django's test client: the whole server-side stack — middleware,
session auth, DRF, services, SQL — without the network):
- region save: ``PATCH /api/v1/regions/<id>/`` (geometry change: validation, measures, conditional
  UPDATE, revision row);
- next task: ``GET /api/v1/queue/next/``;
- floor: ``GET /api/v1/me/``, a trivial authenticated DRF endpoint;
and prints median and p95 of each and the ratio of each p95 to the floor's p95 (target ≤ 3×).

Runs on PostgreSQL only, in its own database (``--database-url``, default
``postgres://postgres@127.0.0.1:5432/sonoalign_bench_annotation``, created and migrated if missing). The rows are
made with ``bulk_create`` (no image rendering: every image row points at one small PNG), once per scale;
re-runs reuse them. ``--seed-demo N`` instead fills the dataset through ``seed_demo --studies N``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/sonoalign_bench_annotation"
READERS = 10
IMAGES_PER_STUDY = 3
BATCH = 10_000


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--regions", type=int, default=None, help="default: 2.75 per image (1M for 364k)")
    parser.add_argument("--requests", type=int, default=300, help="timed requests per endpoint")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    parser.add_argument("--seed-demo", type=int, default=0, help="fill through seed_demo --studies N instead")
    return parser.parse_args()


def _database_ensure(url: str) -> None:
    """Create the benchmark database if missing, so a run never touches the development data."""
    from urllib.parse import urlparse

    import psycopg

    parts = urlparse(url)
    name = parts.path.lstrip("/")
    admin = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def _seed(*, images: int, regions: int) -> None:
    """Bulk rows: studies of three images, two readers per image among ten, ``regions`` regions spread
    over the images that have been read (submitted or in progress)."""
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from annotation import services
    from annotation.models import Assignment, Dataset, Image, Region, Study
    from tests.factories import png_bytes, user_make

    name = f"bench-{images}-{regions}"
    if Dataset.objects.filter(name=name).exists():
        print(f"reusing dataset {name}")
        return name
    started = time.perf_counter()
    from django.contrib.auth import get_user_model

    users = get_user_model().objects
    readers = [users.filter(username=f"bench-reader-{i}").first() or user_make(f"bench-reader-{i}")
               for i in range(READERS)]
    dataset = services.dataset_create(name=name, annotators_per_image=2)
    for reader in readers:
        services.membership_add(dataset=dataset, user=reader, role="annotator")
    file_name = default_storage.save("bench/placeholder.png", ContentFile(png_bytes(800, 600, 90)))
    studies = Study.objects.bulk_create(
        [Study(dataset=dataset, accession=f"B-{i:07d}", patient=f"P-{i % 50000:05d}", body_part="breast")
         for i in range((images + IMAGES_PER_STUDY - 1) // IMAGES_PER_STUDY)], batch_size=BATCH)
    image_rows = []
    for i in range(images):
        image_rows.append(Image(study=studies[i // IMAGES_PER_STUDY], position=i % IMAGES_PER_STUDY, file=file_name,
                                width=800, height=600, sha256=f"{i:064x}", pixel_spacing_x_mm=0.08,
                                pixel_spacing_y_mm=0.08, laterality="right"))
    image_ids = [row.pk for row in Image.objects.bulk_create(image_rows, batch_size=BATCH)]
    del image_rows
    print(f"  {len(studies)} studies, {len(image_ids)} images in {time.perf_counter() - started:.0f} s")

    # Readers i and i+1 read image i (mod 10); the first 60 % of images are read, the rest waiting.
    read_until = int(len(image_ids) * 0.6)
    assignments: list[Assignment] = []
    for index, image_id in enumerate(image_ids):
        for offset in (0, 1):
            status = "submitted" if index < read_until * 0.9 else "in_progress" if index < read_until else "assigned"
            assignments.append(Assignment(image_id=image_id, annotator=readers[(index + offset) % READERS],
                                          status=status))
    Assignment.objects.bulk_create(assignments, batch_size=BATCH)
    print(f"  {len(assignments)} assignments in {time.perf_counter() - started:.0f} s")
    del assignments

    lexicon = dataset.lexicon
    attributes = {"diagnosis": "nodule", "organ_level": "breast", "body_system_level": "breast_and_axilla"}
    assert lexicon  # regions are tagged with values of the pinned lexicon
    pending: list[Region] = []
    made = 0
    # In-progress readings first, so the reader whose saves are timed has regions to save.
    read = Assignment.objects.filter(image__study__dataset=dataset).exclude(status="assigned").order_by("status", "id")
    per_assignment = max(1, -(-regions // max(1, read.count())))
    for assignment_id, image_id, annotator_id in read.values_list("id", "image_id", "annotator_id").iterator(
            chunk_size=BATCH):
        for k in range(per_assignment):
            if made >= regions:
                break
            x = 100 + 40 * k
            pending.append(Region(
                image_id=image_id, author_id=annotator_id, assignment_id=assignment_id, shape="polygon",
                geometry={"points": [[x, 100], [x + 30, 100], [x + 30, 140], [x, 140]]}, attributes=attributes,
                bbox=[x, 100, 30, 40], area_px=1200, area_mm2=7.68, long_axis_mm=4.0, short_axis_mm=2.4))
            made += 1
        if len(pending) >= BATCH:
            Region.objects.bulk_create(pending, batch_size=BATCH)
            pending = []
        if made >= regions:
            break
    Region.objects.bulk_create(pending, batch_size=BATCH)
    print(f"  {made} regions in {time.perf_counter() - started:.0f} s")
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return name


def _time(client, method: str, url_for, count: int, payload_for=None) -> list[float]:
    timings = []
    for i in range(count + 20):
        url = url_for(i)
        data = payload_for(i) if payload_for else None
        started = time.perf_counter()
        response = getattr(client, method)(url, data=data, content_type="application/json") if data is not None \
            else getattr(client, method)(url)
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code not in (200, 201):
            raise SystemExit(f"{method.upper()} {url} answered {response.status_code}: {response.content[:300]!r}")
        if i >= 20:  # the first requests warm caches and connections
            timings.append(elapsed)
        if payload_for is not None:
            payload_for.saved(i, response.json())
    return timings


def main() -> None:
    args = _arguments()
    os.environ["DATABASE_URL"] = args.database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sonoalign.settings")
    _database_ensure(args.database_url)
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from annotation.models import Region

    if connection.vendor != "postgresql":
        raise SystemExit("this benchmark runs on PostgreSQL (give --database-url)")
    settings.DEBUG = False  # no query log in memory while timing
    settings.ALLOWED_HOSTS = ["testserver"]
    call_command("migrate", verbosity=0)
    regions = args.regions if args.regions is not None else int(args.images * 1_000_000 / 364_000)
    if args.seed_demo:
        call_command("seed_demo", studies=args.seed_demo, seed=7)
        dataset_name = None
    else:
        dataset_name = _seed(images=args.images, regions=regions)

    from django.contrib.auth import get_user_model

    reader = get_user_model().objects.get(username="bench-reader-0")
    client = Client()
    client.force_login(reader)
    own = list(Region.objects.filter(author=reader, is_deleted=False, assignment__status="in_progress",
                                     **({"image__study__dataset__name": dataset_name} if dataset_name else {}))
               .order_by("id").values("id", "version")[:50])
    if not own:
        raise SystemExit("no in-progress regions of bench-reader-0 to save")

    class Payload:
        """Each save moves a region by one pixel, on the version the previous save returned."""

        def __call__(self, i):
            region = own[i % len(own)]
            x = 100 + (i // len(own)) % 50
            return {"version": region["version"],
                    "geometry": {"points": [[x, 100], [x + 30, 100], [x + 30, 140], [x, 141]]}}

        def saved(self, i, body):
            own[i % len(own)]["version"] = body["version"]

    counts = {"images": args.images if not args.seed_demo else "seed_demo", "regions": Region.objects.count()}
    print(f"scale: {counts['images']} images, {counts['regions']} regions in the database "
          f"({connection.settings_dict['NAME']})")
    results = {
        "floor GET /api/v1/me/": _time(client, "get", lambda i: "/api/v1/me/", args.requests),
        "next task GET /api/v1/queue/next/": _time(client, "get", lambda i: "/api/v1/queue/next/", args.requests),
        "region save PATCH /api/v1/regions/<id>/": _time(
            client, "patch", lambda i: f"/api/v1/regions/{own[i % len(own)]['id']}/", args.requests, Payload()),
    }
    floor_p95 = _percentile(results["floor GET /api/v1/me/"], 0.95)
    print(f"{'request':44} {'median ms':>10} {'p95 ms':>8} {'p95 / floor':>12}")
    for name, timings in results.items():
        p95 = _percentile(timings, 0.95)
        print(f"{name:44} {statistics.median(timings):10.2f} {p95:8.2f} {p95 / floor_p95:11.2f}×")
    print("target: p95 ≤ 3× the floor")


if __name__ == "__main__":
    main()
