"""Image files: verification, content-addressed storage and thumbnails.

Files are stored under their sha256, so the same pixels imported twice (or shared by demo images) are
stored once. Every image is opened and fully decoded by Pillow before it is accepted, with Pillow's
decompression-bomb guard set from ``IMAGE_MAX_PIXELS``.
"""

from __future__ import annotations

import hashlib
import io
import os
import uuid
import warnings
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

THUMBNAIL_SIZE = (256, 256)
ACCEPTED_FORMATS = {"PNG", "JPEG", "BMP", "TIFF", "WEBP", "GIF"}


class ImageFileError(ValueError):
    """The file is not an acceptable image; the message says why."""


@dataclass(frozen=True)
class VerifiedImage:
    content: bytes
    sha256: str
    width: int
    height: int
    format: str
    thumbnail: bytes | None = None  # the 256-px JPEG, when made from the same decode

    @property
    def extension(self) -> str:
        return {"JPEG": "jpg"}.get(self.format, self.format.lower())


def image_verify(content: bytes, *, thumbnail: bool = False) -> VerifiedImage:
    """Decode ``content`` completely and return its facts. Raises ``ImageFileError`` for an empty,
    oversized, truncated, unknown-format or decompression-bomb file. With ``thumbnail`` the thumbnail
    is made from the same decoded pixels (an importer then decodes each file once)."""
    if not content:
        raise ImageFileError("the file is empty")
    if len(content) > settings.IMAGE_MAX_BYTES:
        raise ImageFileError(f"the file is {len(content):,} bytes; the limit is {settings.IMAGE_MAX_BYTES:,}")
    PILImage.MAX_IMAGE_PIXELS = settings.IMAGE_MAX_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            with PILImage.open(io.BytesIO(content)) as probe:
                fmt = probe.format or ""
                probe.verify()
            with PILImage.open(io.BytesIO(content)) as image:
                image.load()
                width, height = image.size
                small = thumbnail_jpeg(image) if thumbnail and fmt in ACCEPTED_FORMATS else None
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as error:
        raise ImageFileError(f"the image has too many pixels (limit {settings.IMAGE_MAX_PIXELS:,})") from error
    except UnidentifiedImageError as error:
        raise ImageFileError("the file is not an image Pillow can read") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageFileError(f"the image is damaged or truncated ({error})") from error
    if fmt not in ACCEPTED_FORMATS:
        raise ImageFileError(f"image format {fmt or 'unknown'} is not accepted")
    return VerifiedImage(content=content, sha256=hashlib.sha256(content).hexdigest(), width=width,
                         height=height, format=fmt, thumbnail=small)


def thumbnail_jpeg(image: PILImage.Image) -> bytes:
    """The thumbnail of ``image`` as JPEG bytes; ``image`` is shrunk in place (no copy of its pixels)."""
    image.thumbnail(THUMBNAIL_SIZE)
    buffer = io.BytesIO()
    image.convert("L" if image.mode in ("L", "I;16", "I") else "RGB").save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def thumbnail_name(sha256: str) -> str:
    return f"thumbnails/{sha256[:2]}/{sha256}.jpg"


def image_store(verified: VerifiedImage) -> str:
    """Store the file under its hash (once) and return the storage name."""
    name = f"images/{verified.sha256[:2]}/{verified.sha256}.{verified.extension}"
    if not default_storage.exists(name):
        saved = default_storage.save(name, ContentFile(verified.content))
        if saved != name:  # a concurrent writer stored the same bytes first: keep one copy
            default_storage.delete(saved)
    return name


def image_store_pending(verified: VerifiedImage) -> tuple[str, str | None]:
    """Write the file under a temporary name for a transaction that may still roll back. Returns the
    final storage name and the temporary one, or None when the same bytes are stored already (nothing
    was written). Finish with ``image_store_commit`` once the rows are committed, or
    ``image_store_discard`` when they are not."""
    name = f"images/{verified.sha256[:2]}/{verified.sha256}.{verified.extension}"
    return name, _pending(name, verified.content, verified.extension)


def thumbnail_store_pending(verified: VerifiedImage) -> tuple[str, str | None]:
    """``image_store_pending`` for the thumbnail made with the image (``verified.thumbnail``)."""
    name = thumbnail_name(verified.sha256)
    return name, _pending(name, verified.thumbnail, "jpg")


def _pending(name: str, content: bytes, extension: str) -> str | None:
    if default_storage.exists(name):
        return None
    return default_storage.save(f"images/pending/{uuid.uuid4().hex}.{extension}", ContentFile(content))


def image_store_commit(temporary: str, name: str) -> None:
    """Move a pending file to its final name (a rename on local storage, a copy elsewhere)."""
    if default_storage.exists(name):  # another row or worker stored the same bytes meanwhile
        default_storage.delete(temporary)
        return
    try:
        source, target = default_storage.path(temporary), default_storage.path(name)
    except NotImplementedError:
        with default_storage.open(temporary, "rb") as handle:
            saved = default_storage.save(name, handle)
        if saved != name:
            default_storage.delete(saved)
        default_storage.delete(temporary)
        return
    os.makedirs(os.path.dirname(target), exist_ok=True)
    os.replace(source, target)


def image_store_discard(temporary: str) -> None:
    default_storage.delete(temporary)


def thumbnail_make(*, file_name: str) -> str:
    """Make (once) the thumbnail of a stored image file and return its storage name."""
    digest = file_name.rsplit("/", 1)[-1].split(".", 1)[0]
    name = thumbnail_name(digest)
    if default_storage.exists(name):
        return name
    with default_storage.open(file_name, "rb") as handle, PILImage.open(handle) as image:
        content = thumbnail_jpeg(image)
    saved = default_storage.save(name, ContentFile(content))
    if saved != name:
        default_storage.delete(saved)
    return name


def image_pixels(*, file_name: str) -> np.ndarray:
    """The decoded pixels of a stored image as a numpy array: 2-D for grayscale files, RGB otherwise
    (colour on an ultrasound frame is drawn on it: calipers, labels, which the outline proposer masks)."""
    with default_storage.open(file_name, "rb") as handle, PILImage.open(handle) as image:
        if image.mode in ("L", "LA", "I;16", "I", "F", "1"):
            return np.asarray(image.convert("L"))
        return np.asarray(image.convert("RGB"))
