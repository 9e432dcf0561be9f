"""DICOM as machines send it: every compressed transfer syntax imports with the pixels of its
uncompressed twin (within JPEG's loss for JPEG baseline), and every photometric kind is shown right."""

from __future__ import annotations

import io

import numpy as np
import pytest
from django.core.files.storage import default_storage
from PIL import Image as PILImage

from annotation.models import Image, Study
from batches.dicom import dicom_frames
from batches.importing import batch_import
from tests.batches.dicom_fixtures import COMPRESSIONS, LOSSY, PIXEL_KINDS, dicom_twins, supported
from tests.batches.test_import_support import batch_write
from tests.factories import dataset_make

CASES = [(compression, kind, frames) for compression in COMPRESSIONS for kind in PIXEL_KINDS
         for frames in (1, 3) if supported(compression, kind)]


def _decoded(content: bytes) -> list[np.ndarray]:
    return [np.asarray(PILImage.open(io.BytesIO(frame.png))) for frame in dicom_frames(content)]


@pytest.mark.parametrize(("compression", "kind", "frames"), CASES)
def test_compressed_frames_decode_to_the_uncompressed_twins_pixels(compression, kind, frames):
    compressed, plain, expected = dicom_twins(compression=compression, kind=kind, frames=frames)
    ours, twins = _decoded(compressed), _decoded(plain)
    assert len(ours) == len(twins) == frames
    for mine, twin, truth in zip(ours, twins, expected):
        assert mine.shape == twin.shape == truth.shape
        assert np.array_equal(twin, truth)  # the uncompressed route shows the picture itself
        difference = np.abs(mine.astype(int) - twin.astype(int))
        if compression in LOSSY:  # quality 95: a few grey levels on average, never a wrong picture
            assert difference.mean() < 2.5 and np.percentile(difference, 99) < 16
        else:
            assert difference.max() == 0


def test_one_window_for_a_whole_cine():
    """Without a window in the header, every frame of a cine is shown through the same one, so a
    brighter frame looks brighter instead of being stretched to the same contrast."""
    import pydicom

    _, plain, _ = dicom_twins(compression="rle", kind="grey16-window", frames=3)
    ds = pydicom.dcmread(io.BytesIO(plain))
    del ds.WindowCenter, ds.WindowWidth
    stored = ds.pixel_array.copy()
    stored[2] = stored[2] // 2  # a darker last frame
    ds.PixelData = stored.tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer)
    frames = _decoded(buffer.getvalue())
    assert frames[2].mean() < frames[0].mean() * 0.75


@pytest.mark.django_db
def test_a_compressed_batch_imports_with_the_pixels_of_its_uncompressed_twin(tmp_path):
    files, twins = {}, {}
    for number, compression in enumerate(COMPRESSIONS):
        for frames in (1, 3):
            compressed, plain, _ = dicom_twins(compression=compression, kind="grey8", frames=frames,
                                               seed=10 * number + frames, study_uid=f"1.2.826.0.1.{50 + number}")
            files[f"{compression}/{frames}.dcm"] = compressed
            twins[f"{compression}/{frames}.dcm"] = plain
    dataset, twin_dataset = dataset_make(name="compressed"), dataset_make(name="uncompressed")
    report = batch_import(dataset=dataset, path=batch_write(tmp_path / "compressed", None, files))
    assert [p for p in report.problems if p["level"] == "error"] == []
    batch_import(dataset=twin_dataset, path=batch_write(tmp_path / "plain", None, twins))
    assert Study.objects.filter(dataset=dataset).count() == len(COMPRESSIONS)
    assert Image.objects.filter(study__dataset=dataset).count() == len(COMPRESSIONS) * 4
    for image in Image.objects.filter(study__dataset=dataset).select_related("study"):
        twin = Image.objects.get(study__dataset=twin_dataset, study__accession=image.study.accession,
                                 position=image.position)
        assert twin.frame_index == image.frame_index
        with default_storage.open(image.file.name) as a, default_storage.open(twin.file.name) as b:
            mine, theirs = np.asarray(PILImage.open(a)).astype(int), np.asarray(PILImage.open(b)).astype(int)
        assert np.abs(mine - theirs).mean() < 2.5  # JPEG baseline's loss; the lossless ones are equal
    differing = {image.study.accession for image in Image.objects.filter(study__dataset=dataset).select_related("study")
                 if not Image.objects.filter(study__dataset=twin_dataset, sha256=image.sha256).exists()}
    assert len(differing) == 1  # JPEG baseline; the lossless syntaxes give the very same PNG files
