"""DICOM files as ultrasound machines and PACS exports send them, each with its uncompressed twin:
JPEG baseline, JPEG-LS, JPEG 2000 and RLE, single-frame and cine; 16-bit with a VOI window, RGB,
YBR_FULL_422, palette colour and MONOCHROME1. Used by the tests (which generate them on the fly)
and by ``scripts/dicom_fixtures.py`` (which writes them to a folder to look at or import)."""

from __future__ import annotations

import io

import numpy as np

COMPRESSIONS = ("jpeg-baseline", "jpeg-ls", "jpeg-2000", "rle")
PIXEL_KINDS = ("grey8", "grey16-window", "rgb", "palette", "monochrome1")
LOSSY = {"jpeg-baseline"}
# JPEG baseline holds 8-bit grey or colour only (no palette, no 16 bits).
JPEG_BASELINE_KINDS = ("grey8", "monochrome1", "rgb")


def supported(compression: str, kind: str) -> bool:
    return compression != "jpeg-baseline" or kind in JPEG_BASELINE_KINDS


def ultrasound_pixels(*, frames: int, rows: int = 96, cols: int = 128, seed: int = 0) -> np.ndarray:
    """A smooth sector-like picture with a dark nodule and mild speckle, moving a little from frame to
    frame (shape (frames, rows, cols), uint8): smooth enough that JPEG's loss stays small."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float64)
    pictures = []
    for frame in range(frames):
        cx, cy = cols * 0.5 + 3 * frame, rows * 0.55
        tissue = 120 + 60 * np.sin(x / 17.0 + frame * 0.3) * np.cos(y / 23.0)
        nodule = ((x - cx) / 18) ** 2 + ((y - cy) / 12) ** 2 < 1
        picture = np.where(nodule, 40.0, tissue) + rng.normal(0, 3, size=(rows, cols))
        pictures.append(np.clip(picture, 1, 254))
    return np.stack(pictures).astype(np.uint8)


def _dataset(*, study_uid: str, sop_uid: str, frames: int, rows: int, cols: int):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, UltrasoundImageStorage, UltrasoundMultiFrameImageStorage

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage if frames > 1 else UltrasoundImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, sop_uid
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, f"{study_uid}.1"
    ds.PatientID, ds.AccessionNumber, ds.StudyDate, ds.Modality = "MRN-1", f"RIS-{study_uid[-12:]}", "20240301", "US"
    ds.Rows, ds.Columns = rows, cols
    ds.PixelRepresentation = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    return ds


def dicom_pixels_set(ds, pixels: np.ndarray, kind: str) -> None:
    """Write ``pixels`` (frames, rows, cols) uint8 into ``ds`` as pixel data of ``kind``, uncompressed."""
    frames = pixels.shape[0]
    data = pixels if frames > 1 else pixels[0]
    if kind in ("grey8", "monochrome1"):
        ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1, 8, 8, 7
        ds.PhotometricInterpretation = "MONOCHROME1" if kind == "monochrome1" else "MONOCHROME2"
        if kind == "monochrome1":
            data = 255 - data
    elif kind == "grey16-window":
        # 12 bits stored, rescaled by the modality LUT and shown through a window: the window maps
        # 1000 + 8·v back onto 0–255, so the expected display is the 8-bit picture itself.
        ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1, 16, 12, 11
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.RescaleSlope, ds.RescaleIntercept = 2, 1000
        ds.WindowCenter, ds.WindowWidth = 1000 + 8 * 127.5 + 0.5, 8 * 255 + 1
        data = data.astype(np.uint16) * 4
    elif kind == "rgb":
        ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 3, 8, 8, 7
        ds.PhotometricInterpretation, ds.PlanarConfiguration = "RGB", 0
        data = np.stack([data, data // 2 + 60, 255 - data], axis=-1).astype(np.uint8)
    elif kind == "palette":
        ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1, 8, 8, 7
        ds.PhotometricInterpretation = "PALETTE COLOR"
        ramp = np.arange(256, dtype=np.uint16)
        for colour, table in (("Red", ramp), ("Green", ramp // 2 + 60), ("Blue", 255 - ramp)):
            setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [256, 0, 16])
            setattr(ds, f"{colour}PaletteColorLookupTableData", (table * 257).astype("<u2").tobytes())
    else:
        raise ValueError(kind)
    ds.PixelData = np.ascontiguousarray(data).tobytes()


def expected_display(pixels: np.ndarray, kind: str) -> np.ndarray:
    """What an importer should show for ``pixels`` stored as ``kind`` (frames, rows, cols[, 3])."""
    if kind in ("rgb", "palette"):
        return np.stack([pixels, pixels // 2 + 60, 255 - pixels], axis=-1).astype(np.uint8)
    return pixels


def _jpeg_baseline(ds, pixels: np.ndarray, kind: str) -> None:
    """JPEG baseline as machines write it: each frame a JFIF-less JPEG, colour as YBR_FULL_422."""
    from PIL import Image as PILImage
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    colour = kind == "rgb"
    stored = 255 - pixels if kind == "monochrome1" else expected_display(pixels, kind)
    fragments = []
    for frame in stored:
        buffer = io.BytesIO()
        PILImage.fromarray(frame).save(buffer, "JPEG", quality=95, subsampling=1 if colour else 0)
        fragments.append(buffer.getvalue())
    ds.PixelData = encapsulate(fragments)
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    if colour:
        ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.LossyImageCompression = "01"


def dicom_twins(*, compression: str, kind: str = "grey8", frames: int = 1, seed: int = 0,
                study_uid: str = "1.2.826.0.1.77") -> tuple[bytes, bytes, np.ndarray]:
    """``(compressed, uncompressed, expected)``: the same picture in ``compression`` and in explicit VR
    little endian, and the 8-bit display both should import as."""
    from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless

    pixels = ultrasound_pixels(frames=frames, seed=seed)
    rows, cols = pixels.shape[1:]
    files = []
    for index, compressed in enumerate((True, False)):
        ds = _dataset(study_uid=study_uid, sop_uid=f"{study_uid}.{seed}.{frames}.{index}", frames=frames, rows=rows,
                      cols=cols)
        dicom_pixels_set(ds, pixels, kind)
        if compressed:
            if compression == "jpeg-baseline":
                _jpeg_baseline(ds, pixels, kind)
            else:
                syntax = {"jpeg-ls": JPEGLSLossless, "jpeg-2000": JPEG2000Lossless, "rle": RLELossless}[compression]
                ds.compress(syntax)
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        files.append(buffer.getvalue())
    return files[0], files[1], expected_display(pixels, kind)
