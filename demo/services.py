"""The demo dataset: synthetic studies from ``demo.synthetic`` written to the database in bulk.

Used by ``manage.py seed_demo`` and by the benchmarks. Rows are bulk-inserted (the seeded geometry is
valid by construction, so the per-region service path — validation, locking, history — is not needed
here, but measures are computed by the same ``geometry_measures`` the service uses). At scale, images
share a pool of rendered files (``image_pool``), so 364,000 image rows need only a few thousand files.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.utils import timezone

from annotation import services
from annotation.geometry import geometry_measures
from annotation.media import VerifiedImage, image_store
from annotation.models import Assignment, Dataset, Image, Region, Report, Study

from .synthetic import StudyTruth, image_render_png, study_plan

DEMO_PASSWORD = "sonoalign"
DEMO_USERS = {"admin": "admin", "reviewer": "reviewer", "annotator1": "annotator", "annotator2": "annotator"}
DEMO_DATASET = "Demo: breast and thyroid"


@dataclass
class SeedResult:
    dataset: Dataset
    studies: int = 0
    images: int = 0
    regions: int = 0
    files: int = 0
    assignments: int = 0
    reader_disagreements: list[dict] = field(default_factory=list)


def demo_users() -> dict[str, object]:
    """The four demo logins (created once; the password is reset to the documented one)."""
    User = get_user_model()
    users = {}
    for username in DEMO_USERS:
        user, _ = User.objects.get_or_create(username=username, defaults={"email": f"{username}@example.org"})
        user.is_staff = user.is_superuser = username == "admin"
        user.set_password(DEMO_PASSWORD)
        user.save()
        users[username] = user
    return users


def _jitter(geometry: dict, rng: random.Random, width: int, height: int) -> dict:
    """A second reader's outline of the same lesion: each vertex moved by up to 2 px, inside the image."""
    if "points" not in geometry:
        cx, cy = geometry["center"]
        rx, ry = geometry["radii"]
        return {**geometry, "radii": [max(1.0, rx * rng.uniform(0.95, 1.0)), max(1.0, ry * rng.uniform(0.95, 1.0))],
                "center": [cx, cy]}
    points = [[min(max(x + rng.uniform(-2, 2), 0), width), min(max(y + rng.uniform(-2, 2), 0), height)]
              for x, y in geometry["points"]]
    return {"points": points}


def seed_demo(
    *, studies: int, seed: int, dataset_name: str = DEMO_DATASET, readings: float = 0.3,
    image_pool: int | None = None, batch_studies: int = 500, progress: Callable[[int], None] | None = None,
) -> SeedResult:
    """Create (or extend) the demo dataset with ``studies`` synthetic studies planned from ``seed``.

    A share ``readings`` of the images come already read by both annotators (submitted regions drawn
    from the ground truth; the second reader sometimes differs in one attribute or misses a lesion, and
    each such planted reader disagreement is recorded); the rest wait in both annotators' queues. The
    ground truth of each study is stored in ``Study.metadata["truth"]``. Deterministic for a seed.
    """
    users = demo_users()
    dataset = Dataset.objects.filter(name=dataset_name).first() or services.dataset_create(
        name=dataset_name, lexicon_system="udaf", annotators_per_image=2,
        description="Synthetic B-mode breast and thyroid studies with English and Chinese reports.",
    )
    for username, role in DEMO_USERS.items():
        services.membership_add(dataset=dataset, user=users[username], role=role)
        if username == "admin":
            services.membership_add(dataset=dataset, user=users[username], role="reviewer")
    readers = [users["annotator1"], users["annotator2"]]
    result = SeedResult(dataset=dataset)
    files: dict[str, tuple[str, str]] = {}
    measures_cache: dict[tuple, object] = {}
    start = Study.objects.filter(dataset=dataset).count()
    for batch_start in range(start, start + studies, batch_studies):
        plans = [study_plan(seed, index, image_pool=image_pool)
                 for index in range(batch_start, min(batch_start + batch_studies, start + studies))]
        with transaction.atomic():
            _seed_batch(dataset, plans, seed=seed, readers=readers, readings=readings, files=files,
                        measures_cache=measures_cache, result=result)
        result.studies += len(plans)
        if progress:
            progress(len(plans))
    result.files = len(files)
    result.assignments = services.assign_work(dataset=dataset, annotators=readers)
    if connection.vendor == "postgresql":
        # Bulk loads leave the planner's statistics stale until autovacuum comes by; stale estimates
        # turn the alignment and queue queries into scans.
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE annotation_study, annotation_report, annotation_image, annotation_assignment, "
                           "annotation_region")
    return result


def _seed_batch(dataset, plans: list[StudyTruth], *, seed, readers, readings, files, measures_cache, result):
    study_rows = Study.objects.bulk_create([
        Study(dataset=dataset, accession=plan.accession, patient=plan.patient, exam_date=plan.exam_date,
              body_part=plan.body_part, metadata={"truth": plan.to_dict()})
        for plan in plans
    ])
    Report.objects.bulk_create([
        Report(study=study, text=plan.report_text, language=plan.language) for study, plan in zip(study_rows, plans)
    ])
    images: list[Image] = []
    truths = []
    for study, plan in zip(study_rows, plans):
        seen_sha: set[str] = set()
        for truth in plan.images:
            if truth.render_key not in files:
                content = image_render_png(truth, seed=seed)
                digest = hashlib.sha256(content).hexdigest()
                name = image_store(VerifiedImage(content=content, sha256=digest, width=truth.width,
                                                 height=truth.height, format="PNG"))
                files[truth.render_key] = (name, digest)
            name, digest = files[truth.render_key]
            if digest in seen_sha:
                continue  # the same pixels twice in one study are one image
            seen_sha.add(digest)
            images.append(Image(
                study=study, position=truth.index, file=name, original_name=f"{plan.accession}_{truth.index + 1}.png",
                width=truth.width, height=truth.height, sha256=digest, pixel_spacing_x_mm=truth.pixel_spacing_mm,
                pixel_spacing_y_mm=truth.pixel_spacing_mm, laterality=truth.laterality, view=truth.view,
                body_marker=truth.body_marker,
            ))
            truths.append((plan, truth))
    Image.objects.bulk_create(images, batch_size=2000)
    result.images += len(images)

    now = timezone.now()
    assignments, regions, read_images = [], [], []
    for image, (plan, truth) in zip(images, truths):
        # Whole studies are read or not, as a reading room works.
        if random.Random(f"{seed}:reading:{plan.accession}").random() >= readings:
            continue
        rng = random.Random(f"{seed}:reading:{plan.accession}:{truth.index}")
        read_images.append(image.pk)
        for reader_index, reader in enumerate(readers):
            assignment = Assignment(image=image, annotator=reader, status=Assignment.Status.SUBMITTED,
                                    started_at=now, submitted_at=now)
            assignments.append(assignment)
            for lesion in truth.lesions:
                attributes = {k: v for k, v in lesion.attributes.items() if k != "negated"}
                geometry = lesion.geometry
                if reader_index == 1:
                    roll = rng.random()
                    if roll < 0.05:
                        result.reader_disagreements.append({"kind": "missed_lesion", "study": plan.accession,
                                                            "image": truth.index, "lesion": lesion.key})
                        continue
                    if roll < 0.15 and attributes.get("echogenicity"):
                        other = "isoechoic" if attributes["echogenicity"] != "isoechoic" else "hypoechoic"
                        result.reader_disagreements.append({
                            "kind": "attribute", "study": plan.accession, "image": truth.index,
                            "lesion": lesion.key, "attribute": "echogenicity",
                            "values": [attributes["echogenicity"], other]})
                        attributes = {**attributes, "echogenicity": other}
                    # The second reader's outline depends only on the pixels, so images that share a
                    # rendered file share it too and its measures are computed once.
                    geometry = _jitter(geometry, random.Random(f"{seed}:outline:{truth.render_key}:{lesion.key}"),
                                       truth.width, truth.height)
                key = (truth.render_key, lesion.key, reader_index)
                measures = measures_cache.get(key)
                if measures is None:
                    measures = measures_cache[key] = geometry_measures(
                        lesion.shape, geometry, spacing_x_mm=truth.pixel_spacing_mm, spacing_y_mm=truth.pixel_spacing_mm)
                regions.append(Region(
                    image=image, author=reader, assignment=assignment, source=Region.Source.READER,
                    source_id=f"{plan.accession}/{truth.index}/{lesion.key}", shape=lesion.shape, geometry=geometry,
                    label=lesion.label, lesion_key=lesion.key, attributes=attributes, bbox=measures.bbox,
                    area_px=measures.area_px, area_mm2=measures.area_mm2, long_axis_mm=measures.long_axis_mm,
                    short_axis_mm=measures.short_axis_mm,
                ))
    Assignment.objects.bulk_create(assignments, batch_size=5000)
    Region.objects.bulk_create(regions, batch_size=5000)
    Image.objects.filter(pk__in=read_images).update(status=Image.Status.ANNOTATED)
    result.regions += len(regions)
