"""Batch builders shared by the import and export tests (no tests here): JPEG/PNG files, DICOM files
made with pydicom (single- and multi-frame, with PHI in the header to check its removal), manifests
and zips."""

from __future__ import annotations

import io
import json
import random
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

PHI_NAME = "Doe^Jane"
PHI_ID = "MRN-778899"
PHI_BIRTH = "19700101"
PHI_ACCESSION = "RIS-55501"


def jpeg_bytes(width: int = 320, height: int = 240, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 255, size=(height, width), dtype=np.uint8)
    buffer = io.BytesIO()
    PILImage.fromarray(array).save(buffer, "JPEG", quality=80)
    return buffer.getvalue()


def dicom_bytes(*, study_uid: str, frames: int = 1, rows: int = 240, cols: int = 320, seed: int = 0,
                patient_id: str = PHI_ID, accession: str = PHI_ACCESSION, laterality: str = "R",
                spacing_cm: tuple[float, float] | None = (0.008, 0.009), pixel_spacing_mm: list | None = None,
                burned_in: bool = False, banner_value: int | None = None) -> bytes:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, UltrasoundImageStorage, UltrasoundMultiFrameImageStorage

    sop_uid = f"{study_uid}.{seed}.{frames}"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage if frames > 1 else UltrasoundImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = f"{study_uid}.1"
    ds.PatientName = PHI_NAME
    ds.PatientID = patient_id
    ds.PatientBirthDate = PHI_BIRTH
    ds.AccessionNumber = accession
    ds.InstitutionName = "St Example Hospital"
    ds.StudyDate = "20240301"
    ds.Modality = "US"
    ds.BodyPartExamined = "THYROID"
    ds.ImageLaterality = laterality
    ds.BurnedInAnnotation = "YES" if burned_in else "NO"
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    if frames > 1:
        ds.NumberOfFrames = frames
    if spacing_cm:
        region = Dataset()
        region.RegionSpatialFormat = 1
        region.RegionDataType = 1
        region.RegionLocationMinX0, region.RegionLocationMinY0 = 0, 0
        region.RegionLocationMaxX1, region.RegionLocationMaxY1 = cols - 1, rows - 1
        region.PhysicalUnitsXDirection = 3
        region.PhysicalUnitsYDirection = 3
        region.PhysicalDeltaX, region.PhysicalDeltaY = spacing_cm
        ds.SequenceOfUltrasoundRegions = Sequence([region])
    if pixel_spacing_mm:
        ds.PixelSpacing = pixel_spacing_mm
    rng = np.random.default_rng(seed)
    shape = (frames, rows, cols) if frames > 1 else (rows, cols)
    pixels = rng.integers(1, 255, size=shape, dtype=np.uint8)
    if banner_value is not None:
        pixels[..., :20, :] = banner_value
    ds.PixelData = pixels.tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


SQUARE = [[10, 10], [110, 10], [110, 60], [10, 60]]


def manifest_rows() -> list[dict]:
    """Three good studies: thyroid (TI-RADS-like attributes stay valid only in a udaf dataset if the
    codes are udaf's; these use udaf codes), one with two images, one report pending."""
    return [
        {"study": "ACC-0001", "patient": "P-0001", "exam_date": "2024-03-01", "body_part": "thyroid",
         "report": {"text": "Right lobe: solid hypoechoic nodule 1.2 cm.", "language": "en"},
         "images": [{"file": "images/0001_1.jpg", "laterality": "right", "view": "transverse",
                     "body_marker": "RT THY TRV", "pixel_spacing_mm": [0.08, 0.08], "frame": 0,
                     "regions": [{"shape": "polygon", "points": SQUARE, "label": "nodule", "lesion": "L1",
                                  "id": "src-1", "author": "hospital-a",
                                  "attributes": {"diagnosis": "nodule", "echogenicity": "hypoechoic",
                                                 "organ_level": "thyroid_gland"}},
                                 {"shape": "ellipse", "center": [200, 120], "radii": [30, 20], "rotation": 15,
                                  "label": "nodule", "lesion": "L2", "attributes": {"shape": "oval"}}]},
                    {"file": "images/0001_2.jpg", "laterality": "right",
                     "regions": [{"shape": "rectangle", "points": [[20, 30], [90, 100]], "label": "cyst",
                                  "attributes": {"diagnosis": "cyst", "echogenicity": "anechoic"}},
                                 {"shape": "line", "points": [[5, 5], [50, 50]], "label": "caliper"}]}]},
        {"study": "ACC-0002", "patient": "P-0002", "report": {"text": "甲状腺左叶低回声结节，边界清。"},
         "images": [{"file": "images/0002_1.jpg", "laterality": "left",
                     "regions": [{"shape": "polygon", "points": [[40, 40], [140, 50], [120, 150]],
                                  "label": "nodule", "attributes": {"margins": "well_defined"}}]}]},
        {"study": "ACC-0003", "patient": "P-0003", "images": [{"file": "images/0003_1.jpg"}]},
    ]


def batch_files(seed: int = 0) -> dict[str, bytes]:
    return {f"images/{name}.jpg": jpeg_bytes(seed=seed + index)
            for index, name in enumerate(["0001_1", "0001_2", "0002_1", "0003_1"])}


def dicom_files() -> dict[str, bytes]:
    return {
        "dicom/study9/single.dcm": dicom_bytes(study_uid="1.2.826.0.1.9", seed=91),
        "dicom/study9/cine.dcm": dicom_bytes(study_uid="1.2.826.0.1.9", frames=4, seed=92, laterality="L"),
    }


def batch_write(root: Path, rows: list[dict] | None, files: dict[str, bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    if rows is not None:
        (root / "manifest.jsonl").write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows),
                                             encoding="utf-8")
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)
    return root


def zip_write(path: Path, entries: dict[str, bytes | str]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return path


def standard_batch(root: Path) -> Path:
    """Manifest (3 studies, 4 JPEGs) plus a DICOM study of two files, one a 4-frame cine."""
    return batch_write(root, manifest_rows(), batch_files() | dicom_files())


def shuffled(items: list, seed: int = 0) -> list:
    items = list(items)
    random.Random(seed).shuffle(items)
    return items
