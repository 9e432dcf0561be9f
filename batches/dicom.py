"""DICOM ultrasound files → de-identified frames and the facts the importer needs.

pydicom reads the file; we never store the DICOM file itself. Each kept frame is re-encoded as a PNG
(8-bit grey or RGB), so the only header data that reaches the database is what this module returns.

PHI handling (DICOM PS3.15 basic profile in spirit; the header is otherwise discarded):

- pseudonymised (keyed HMAC-SHA256, deterministic so a re-import or a later batch lands on the same
  rows; key = ``settings.IMPORT_PSEUDONYM_KEY``, else ``SECRET_KEY``):
  PatientID → ``patient`` (``P-`` + 16 hex), AccessionNumber (else StudyInstanceUID) → ``accession``
  (``US-`` + 16 hex), StudyInstanceUID / SeriesInstanceUID / SOPInstanceUID → ``2.25.<decimal>`` UIDs.
- removed (never read into the database): PatientName, PatientBirthDate, PatientBirthTime, PatientAge,
  PatientAddress, PatientTelephoneNumbers, OtherPatientIDs, OtherPatientNames, PatientMotherBirthName,
  MedicalRecordLocator, ReferringPhysicianName, PerformingPhysicianName, OperatorsName,
  InstitutionName, InstitutionAddress, InstitutionalDepartmentName, StationName, DeviceSerialNumber,
  StudyID, StudyTime, SeriesTime, AcquisitionDateTime, ContentTime, and every private tag.
- kept: StudyDate (the exam date: research needs it; shift it before import if your protocol says so),
  BodyPartExamined, ImageLaterality/Laterality, Modality, Manufacturer, ManufacturerModelName, pixel
  spacing, frame numbers.
- pixels: text burned into the image (name, date on the banner) is not detectable from the header
  alone; a configured banner rectangle (``banner=(x, y, width, height)``) is blacked out on every frame.
  Files that declare ``BurnedInAnnotation = YES`` without a banner configured get a warning.
"""

from __future__ import annotations

import hashlib
import hmac
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date

import numpy as np
from django.conf import settings
from django.utils.translation import gettext
from PIL import Image as PILImage

from annotation.media import thumbnail_jpeg

DICM_OFFSET = 128
LATERALITY = {"R": "right", "L": "left", "B": "bilateral", "U": ""}
CM_UNITS = 3  # PhysicalUnitsX/YDirection code for centimetres (PS3.3 C.8.5.5.1.15)


class DicomFileError(ValueError):
    """The file is not a usable DICOM image; the message says why."""


@dataclass(frozen=True)
class DicomHeader:
    """The de-identified facts of one DICOM file (no pixels)."""

    study_uid: str
    series_uid: str
    sop_uid: str
    accession: str
    patient: str
    exam_date: date | None
    body_part: str
    laterality: str
    spacing_mm: tuple[float, float] | None  # (x, y)
    frames: int
    burned_in: bool
    metadata: dict = field(default_factory=dict)


@dataclass(frozen=True)
class DicomFrame:
    index: int
    png: bytes
    width: int
    height: int
    thumbnail: bytes | None = None  # made from the same decoded pixels as the PNG


def is_dicom(head: bytes, name: str = "") -> bool:
    """A DICOM Part 10 file has ``DICM`` after a 128-byte preamble; bare ``.dcm`` files without the
    preamble are accepted by name."""
    return head[DICM_OFFSET:DICM_OFFSET + 4] == b"DICM" or name.lower().endswith(".dcm")


def pseudonym(kind: str, value: str) -> str:
    """Keyed, deterministic pseudonym: the same input always gives the same output under one key, and
    nobody without the key can test a guessed identifier against it."""
    key = settings.IMPORT_PSEUDONYM_KEY.encode()
    return hmac.new(key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()


def _uid(kind: str, value: str) -> str:
    # 2.25.<integer> is the UUID-derived UID root (PS3.5 B.2): no registered root needed, ≤ 64 chars.
    return f"2.25.{int(pseudonym(kind, value)[:30], 16)}" if value else ""


def _read(content: bytes, *, pixels: bool):
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(io.BytesIO(content), stop_before_pixels=not pixels, force=True)
    except (InvalidDicomError, EOFError, OSError, ValueError, TypeError, KeyError) as error:
        raise DicomFileError(gettext("not a readable DICOM file (%(error)s)") % {"error": error}) from error


def _spacing(ds) -> tuple[float, float] | None:
    """Physical size of a pixel in mm: the ultrasound region calibration first (it is what the scanner
    measured with), then Pixel Spacing (row, column order in the header)."""
    try:
        for region in getattr(ds, "SequenceOfUltrasoundRegions", None) or []:
            dx, dy = getattr(region, "PhysicalDeltaX", None), getattr(region, "PhysicalDeltaY", None)
            units = (getattr(region, "PhysicalUnitsXDirection", None),
                     getattr(region, "PhysicalUnitsYDirection", None))
            if dx and dy and units == (CM_UNITS, CM_UNITS):
                return abs(float(dx)) * 10.0, abs(float(dy)) * 10.0
        spacing = getattr(ds, "PixelSpacing", None)
        if spacing and len(spacing) == 2 and float(spacing[0]) > 0 and float(spacing[1]) > 0:
            return float(spacing[1]), float(spacing[0])
    except (TypeError, ValueError, OverflowError, AttributeError):
        return None  # a malformed calibration is no calibration; the importer checks plausibility
    return None


def _date(value) -> date | None:
    text = str(value or "").strip()
    if len(text) != 8 or not text.isdigit():
        return None
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None


def dicom_header(content: bytes) -> DicomHeader:
    """Read and de-identify the header of one DICOM file. Raises ``DicomFileError``."""
    ds = _read(content, pixels=False)
    study_uid_raw = str(getattr(ds, "StudyInstanceUID", "") or "")
    if not study_uid_raw:
        raise DicomFileError(gettext("the file has no Study Instance UID"))
    if "PixelData" not in ds and not getattr(ds, "Rows", None):
        raise DicomFileError(gettext("the file holds no image"))
    accession_raw = str(getattr(ds, "AccessionNumber", "") or "") or study_uid_raw
    patient_raw = str(getattr(ds, "PatientID", "") or "") or study_uid_raw
    laterality = str(getattr(ds, "ImageLaterality", "") or getattr(ds, "Laterality", "") or "").upper()
    metadata = {"source": "dicom"}
    for keyword in ("Modality", "Manufacturer", "ManufacturerModelName"):
        value = str(getattr(ds, keyword, "") or "")
        if value:
            metadata[keyword.lower()] = value[:64]
    return DicomHeader(
        study_uid=_uid("study", study_uid_raw),
        series_uid=_uid("series", str(getattr(ds, "SeriesInstanceUID", "") or "")),
        sop_uid=_uid("sop", str(getattr(ds, "SOPInstanceUID", "") or "")),
        accession=f"US-{pseudonym('accession', accession_raw)[:16]}",
        patient=f"P-{pseudonym('patient', patient_raw)[:16]}",
        exam_date=_date(getattr(ds, "StudyDate", "")),
        body_part=str(getattr(ds, "BodyPartExamined", "") or "").lower()[:64],
        laterality=LATERALITY.get(laterality[:1], ""),
        spacing_mm=_spacing(ds),
        frames=int(getattr(ds, "NumberOfFrames", 1) or 1),
        burned_in=str(getattr(ds, "BurnedInAnnotation", "") or "").upper() == "YES",
        metadata=metadata,
    )


class _Display:
    """Turns decoded frames of one file into 8-bit display pixels the same way for every frame: the
    modality LUT (rescale), then one VOI window for the whole file — the header's window (or VOI LUT)
    when it has one, else the value range of the first frame shown — so a cine does not flicker from
    frame to frame; MONOCHROME1 is inverted; palette colour goes through its LUT; colour stays RGB
    (pydicom has already converted YBR_FULL / YBR_FULL_422 and the JPEG colour spaces to RGB)."""

    def __init__(self, ds):
        self.ds = ds
        self.photometric = str(getattr(ds, "PhotometricInterpretation", "") or "").upper()
        self.has_voi = "WindowCenter" in ds or "VOILUTSequence" in ds
        self.window: tuple[float, float] | None = None

    def __call__(self, array: np.ndarray) -> np.ndarray:
        from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut

        if self.photometric == "PALETTE COLOR":
            array = apply_color_lut(array, self.ds)
            return array if array.dtype == np.uint8 else (array >> 8).astype(np.uint8)
        if array.ndim == 3 and array.shape[-1] == 3:  # RGB
            if array.dtype == np.uint8:
                return array
            return self._scale(array.astype(np.float64), 0.0, float(2 ** int(self.ds.BitsStored) - 1))
        if array.ndim == 3 and array.shape[-1] == 1:
            array = array[..., 0]
        array = apply_modality_lut(array, self.ds)
        if self.has_voi:
            array = apply_voi_lut(array, self.ds, index=0)  # index 0: one window for every frame
            self.window = self.window or _voi_output_range(self.ds)
        if self.window is None:
            if array.dtype == np.uint8:
                self.window = (0.0, 255.0)
            else:
                self.window = (float(array.min()), float(array.max()))
        low, high = self.window
        pixels = self._scale(np.asarray(array, dtype=np.float64), low, high)
        return 255 - pixels if self.photometric == "MONOCHROME1" else pixels

    @staticmethod
    def _scale(array: np.ndarray, low: float, high: float) -> np.ndarray:
        if high <= low:
            return np.zeros(array.shape, dtype=np.uint8)
        return np.clip((array - low) * (255.0 / (high - low)), 0, 255).round().astype(np.uint8)


def _voi_output_range(ds) -> tuple[float, float]:
    """The range the VOI transform maps onto (PS3.3 C.11.2.1.2): a VOI LUT's own output depth, else the
    stored values' range carried through the modality LUT or rescale, as pydicom's windowing does."""
    lut = (ds.get("VOILUTSequence") or [None])[0]
    if lut is not None and "WindowCenter" not in ds:
        return 0.0, float(2 ** int(lut.LUTDescriptor[2]) - 1)
    if ds.get("ModalityLUTSequence"):
        return 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    bits = int(ds.BitsStored)
    low, high = (0.0, 2.0 ** bits - 1) if not ds.get("PixelRepresentation") else (-(2.0 ** (bits - 1)),
                                                                                  2.0 ** (bits - 1) - 1)
    if ds.get("RescaleSlope") is not None and ds.get("RescaleIntercept") is not None:
        slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
        low, high = sorted((low * slope + intercept, high * slope + intercept))
    return low, high


def dicom_frames(content: bytes, *, frames: list[int] | None = None, frame_step: int = 1,
                 banner: tuple[int, int, int, int] | None = None) -> Iterator[DicomFrame]:
    """Yield the chosen frames as PNG bytes with their size, decoding one frame at a time (a long cine
    never sits in memory whole) through pydicom's pixel handlers: uncompressed, RLE, JPEG baseline and
    extended, JPEG lossless, JPEG-LS and JPEG 2000 (the pylibjpeg plugins). ``frames`` picks exact
    indices; otherwise every ``frame_step``-th frame from 0. The banner rectangle, if any, is painted
    black before encoding."""
    from pydicom.pixels import pixel_array

    ds = _read(content, pixels=True)
    if "PixelData" not in ds:
        raise DicomFileError(gettext("the file holds no pixel data"))
    total = int(getattr(ds, "NumberOfFrames", 1) or 1)
    pixels = int(getattr(ds, "Rows", 0) or 0) * int(getattr(ds, "Columns", 0) or 0)
    if pixels > settings.IMAGE_MAX_PIXELS:
        # Checked before decoding: the decoder would allocate the whole frame first.
        raise DicomFileError(gettext("the frames have too many pixels (%(pixels)s; limit %(limit)s)")
                             % {"pixels": f"{pixels:,}", "limit": f"{settings.IMAGE_MAX_PIXELS:,}"})
    display = _Display(ds)
    wanted = frames if frames is not None else list(range(0, total, max(1, int(frame_step))))
    for index in wanted:
        if not 0 <= index < total:
            raise DicomFileError(gettext("frame %(index)s does not exist (the file has %(total)s)")
                                 % {"index": index, "total": total})
        try:
            array = display(np.asarray(pixel_array(ds, index=index if total > 1 else None)))
        except Exception as error:  # any decoder failure means "cannot read the pixels"
            raise DicomFileError(gettext("cannot decode the pixels (%(error)s)")
                             % {"error": f"{type(error).__name__}: {error}"}) from error
        if banner is not None:
            x, y, width, height = banner
            array = array.copy()
            array[max(0, y):max(0, y + height), max(0, x):max(0, x + width)] = 0
        buffer = io.BytesIO()
        # compress_level 1: the PNG is a lossless carrier; level 6 costs several times the time for a
        # few per cent of size on speckle.
        picture = PILImage.fromarray(np.ascontiguousarray(array))
        picture.save(buffer, "PNG", compress_level=1)
        yield DicomFrame(index=index, png=buffer.getvalue(), width=int(array.shape[1]), height=int(array.shape[0]),
                         thumbnail=thumbnail_jpeg(picture))
