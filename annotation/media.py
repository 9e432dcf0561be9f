"""Image files: verification, content-addressed storage and thumbnails.

Files are stored under their sha256, so the same pixels imported twice (or shared by demo images) are
stored once. Every image is opened and fully decoded by Pillow before it is accepted, with Pillow's
decompression-bomb guard set from ``IMAGE_MAX_PIXELS``.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone
from django.utils.translation import gettext
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
    is made from the same decoded pixels (an importer then decodes each file once). Safe on several
    threads at once: the pixel limit is checked on the size the header declares, before decoding, not
    through the process-wide warnings filter (Pillow only warns up to twice its limit)."""
    if not content:
        raise ImageFileError(gettext("the file is empty"))
    if len(content) > settings.IMAGE_MAX_BYTES:
        raise ImageFileError(gettext("the file is %(size)s bytes; the limit is %(limit)s")
                             % {"size": f"{len(content):,}", "limit": f"{settings.IMAGE_MAX_BYTES:,}"})
    PILImage.MAX_IMAGE_PIXELS = settings.IMAGE_MAX_PIXELS
    try:
        with PILImage.open(io.BytesIO(content)) as probe:
            fmt = probe.format or ""
            if probe.width * probe.height > settings.IMAGE_MAX_PIXELS:
                raise PILImage.DecompressionBombError(f"{probe.width}×{probe.height} px")
            probe.verify()
        with PILImage.open(io.BytesIO(content)) as image:
            image.load()
            width, height = image.size
            small = thumbnail_jpeg(image) if thumbnail and fmt in ACCEPTED_FORMATS else None
    except PILImage.DecompressionBombError as error:
        raise ImageFileError(gettext("the image has too many pixels (limit %(limit)s)")
                             % {"limit": f"{settings.IMAGE_MAX_PIXELS:,}"}) from error
    except UnidentifiedImageError as error:
        raise ImageFileError(gettext("the file is not an image Pillow can read")) from error
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageFileError(gettext("the image is damaged or truncated (%(error)s)") % {"error": error}) from error
    if fmt not in ACCEPTED_FORMATS:
        raise ImageFileError(gettext("image format %(format)s is not accepted") % {"format": fmt or "unknown"})
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
    return default_storage.save(f"{PENDING_DIR}/{uuid.uuid4().hex}.{extension}", ContentFile(content))


# Where files wait, under temporary names, for the rows that will point at them to commit.
PENDING_DIR = "images/pending"


def pending_sweep(*, older_than: timedelta = timedelta(hours=24)) -> int:
    """Remove the temporary files an import left behind when it could not clean up after itself (a
    decode process or a worker killed mid-write). Only files older than ``older_than`` go, so a running
    import keeps its own (a batch job is stopped after 12 hours). Returns how many were removed."""
    try:
        _, names = default_storage.listdir(PENDING_DIR)
    except (FileNotFoundError, NotImplementedError):
        return 0
    cutoff, removed = timezone.now() - older_than, 0
    for name in names:
        path = f"{PENDING_DIR}/{name}"
        try:
            if default_storage.get_modified_time(path) < cutoff:
                default_storage.delete(path)
                removed += 1
        except (OSError, NotImplementedError):  # gone meanwhile, or the storage cannot tell its age
            continue
    return removed


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


def thumbnail_make(*, image) -> str:
    """Make (once) the thumbnail of an image (stored or referenced) and return its storage name. Raises
    ``ReferenceProblem`` when a referenced file changed or vanished."""
    name = thumbnail_name(image.sha256)
    if default_storage.exists(name):
        return name
    with image_open(image=image) as handle, PILImage.open(handle) as decoded:
        content = thumbnail_jpeg(decoded)
    saved = default_storage.save(name, ContentFile(content))
    if saved != name:
        default_storage.delete(saved)
    return name


def image_pixels(*, image) -> np.ndarray:
    """The decoded pixels of an image as a numpy array: 2-D for grayscale files, RGB otherwise (colour
    on an ultrasound frame is drawn on it: calipers, labels, which the outline proposer masks). Raises
    ``ReferenceProblem`` when a referenced file changed or vanished."""
    with image_open(image=image) as handle, PILImage.open(handle) as image:
        if image.mode in ("L", "LA", "I;16", "I", "F", "1"):
            return np.asarray(image.convert("L"))
        return np.asarray(image.convert("RGB"))


# ---------------------------------------------------------------------------------------------- references
# An archive too big to copy is referenced in place: the image row keeps the file's path below
# IMPORT_ROOT and its sha256, and every read checks the file is still the one that was imported.


class ReferenceProblem(Exception):
    """A referenced file is gone or no longer the file that was imported; the message says which."""


def import_root() -> Path | None:
    """The resolved IMPORT_ROOT, or None when referencing is off."""
    return Path(settings.IMPORT_ROOT).resolve() if settings.IMPORT_ROOT else None


def reference_path_check(path: str | Path) -> str:
    """The path of ``path`` below IMPORT_ROOT (posix, relative), after resolving ``..`` and symbolic
    links. Raises ``ValueError`` when referencing is off or the path lies outside the root."""
    root = import_root()
    if root is None:
        raise ValueError("referencing is off: set IMPORT_ROOT to the folder that holds the archives")
    resolved = Path(path).resolve()
    if not resolved.is_relative_to(root):
        raise ValueError(f"{path} is not under IMPORT_ROOT ({root}) once links and '..' are resolved")
    return resolved.relative_to(root).as_posix()


def image_open(*, image) -> BinaryIO:
    """Open the bytes of ``image`` (an ``Image`` or anything with ``pk``, ``file``, ``source_path`` and
    ``sha256``), stored or referenced. A referenced file is checked against its sha256 on every open
    (through a cache keyed by path, size and modification time, so large files are hashed once while
    unchanged); when it vanished or changed, the problem is recorded on the image row (the dataset page
    shows it to admins) and ``ReferenceProblem`` raised. A file that matches again clears the record."""
    source_path = getattr(image, "source_path", "")
    if not source_path:
        file = image.file
        return default_storage.open(file if isinstance(file, str) else file.name, "rb")
    try:
        handle = _reference_open(source_path)
    except FileNotFoundError:
        _reference_problem_record(image, "the referenced file has vanished")
        raise ReferenceProblem(f"the referenced file {source_path} has vanished") from None
    except ValueError as error:
        _reference_problem_record(image, str(error)[:255])
        raise ReferenceProblem(str(error)) from None
    stat = os.fstat(handle.fileno())
    digest = _file_sha256(str(handle.name), stat.st_size, stat.st_mtime_ns, handle)
    if digest != image.sha256:
        handle.close()
        _reference_problem_record(image, "the referenced file has changed since it was imported")
        raise ReferenceProblem(f"the referenced file {source_path} has changed since it was imported")
    if getattr(image, "reference_problem", ""):
        _reference_problem_record(image, "")
    handle.seek(0)
    return handle


def _reference_open(source_path: str) -> BinaryIO:
    root = import_root()
    if root is None:
        raise ValueError("the image is referenced but IMPORT_ROOT is not set")
    # Checked again on every read: the root or a link on the way may have changed since the import.
    path = (root / source_path).resolve()
    if not path.is_relative_to(root):
        raise ValueError(f"the referenced file {source_path} now lies outside IMPORT_ROOT")
    return path.open("rb")


_digests: dict[tuple[str, int, int], str] = {}
_digests_lock = threading.Lock()
_DIGESTS_KEPT = 4096


def _file_sha256(path: str, size: int, mtime_ns: int, handle: BinaryIO) -> str:
    """The sha256 of the open file at ``path``, hashed once per (path, size, modification time) in this
    process: a page that shows a referenced image does not re-read a large file on every request."""
    key = (path, size, mtime_ns)
    with _digests_lock:
        digest = _digests.get(key)
    if digest is None:
        hasher = hashlib.sha256()
        for block in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(block)
        digest = hasher.hexdigest()
        with _digests_lock:
            if len(_digests) >= _DIGESTS_KEPT:
                _digests.pop(next(iter(_digests)))
            _digests[key] = digest
    return digest


def _reference_problem_record(image, problem: str) -> None:
    from .services import image_reference_problem_record

    if image.pk is not None and getattr(image, "reference_problem", None) != problem:
        image_reference_problem_record(image_id=image.pk, problem=problem)
        if hasattr(image, "reference_problem"):
            image.reference_problem = problem
