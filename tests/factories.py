"""Small factories: each builds a valid object through the services, with overridable fields."""

from __future__ import annotations

import hashlib
import io
import itertools

from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from PIL import Image as PILImage

from annotation import services
from annotation.models import Assignment, Dataset, Image, Membership, Study

_counter = itertools.count(1)


def user_make(username: str | None = None, *, staff: bool = False, password: str = "pw-test-12345"):
    username = username or f"user{next(_counter)}"
    return get_user_model().objects.create_user(username=username, password=password, is_staff=staff)


def dataset_make(*, name: str | None = None, lexicon: str = "udaf", annotators_per_image: int = 2,
                 members: dict[str, list] | None = None) -> Dataset:
    dataset = services.dataset_create(name=name or f"dataset-{next(_counter)}", lexicon_system=lexicon,
                                      annotators_per_image=annotators_per_image)
    for role, users in (members or {}).items():
        for user in users:
            services.membership_add(dataset=dataset, user=user, role=role)
    return dataset


def study_make(dataset: Dataset, *, accession: str | None = None, report: str | None = None,
               language: str = "en", patient: str = "P-0001") -> Study:
    study = Study.objects.create(dataset=dataset, accession=accession or f"ACC-{next(_counter):05d}",
                                 patient=patient, body_part="breast")
    if report:
        services.report_set(study=study, text=report, language=language)
    return study


def png_bytes(width: int = 64, height: int = 48, shade: int | None = None) -> bytes:
    buffer = io.BytesIO()
    PILImage.new("L", (width, height), shade if shade is not None else next(_counter) % 256).save(buffer, "PNG")
    return buffer.getvalue()


def image_make(study: Study, *, width: int = 400, height: int = 300, spacing: float | None = 0.1,
               laterality: str = "right", position: int = 0, content: bytes | None = None) -> Image:
    content = content or png_bytes(width, height, shade=next(_counter) % 256)
    digest = hashlib.sha256(content).hexdigest()
    image = Image(study=study, width=width, height=height, sha256=digest, position=position,
                  pixel_spacing_x_mm=spacing, pixel_spacing_y_mm=spacing, laterality=laterality,
                  original_name=f"img{position}.png")
    image.file.save(f"images/{digest[:2]}/{digest}.png", ContentFile(content), save=False)
    image.save()
    return image


def assignment_make(image: Image, annotator) -> Assignment:
    if not Membership.objects.filter(dataset=image.study.dataset, user=annotator, role="annotator").exists():
        services.membership_add(dataset=image.study.dataset, user=annotator, role="annotator")
    return Assignment.objects.create(image=image, annotator=annotator)


SQUARE = {"points": [[10, 10], [110, 10], [110, 60], [10, 60]]}


def wait_until(predicate, *, timeout: float = 90.0, interval: float = 0.2):
    """Poll ``predicate`` until it returns something truthy (returned) or ``timeout`` passes (None): how
    tests wait for a real worker process."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return None
