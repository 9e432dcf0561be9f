"""Write the compressed-DICOM fixtures (each with its uncompressed twin) into a folder, to look at or
to import: ``python scripts/dicom_fixtures.py /tmp/dicom-fixtures``. The tests build the same files
on the fly from ``tests/batches/dicom_fixtures.py``; needs the pinned pylibjpeg plugins and pyjpegls."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.batches.dicom_fixtures import COMPRESSIONS, PIXEL_KINDS, dicom_twins, supported  # noqa: E402


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[0])
    written = 0
    for compression in COMPRESSIONS:
        for kind in PIXEL_KINDS:
            if not supported(compression, kind):
                continue
            for frames in (1, 3):
                try:
                    compressed, plain, _ = dicom_twins(compression=compression, kind=kind, frames=frames,
                                                       study_uid=f"1.2.826.0.1.{80 + COMPRESSIONS.index(compression)}")
                except (ValueError, RuntimeError, NotImplementedError) as error:
                    print(f"skipped {compression} {kind}: {error}", file=sys.stderr)
                    continue
                folder = out / compression / kind
                folder.mkdir(parents=True, exist_ok=True)
                (folder / f"{frames}-frame.dcm").write_bytes(compressed)
                (folder / f"{frames}-frame-uncompressed.dcm").write_bytes(plain)
                written += 2
    print(f"{out}: {written} files")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
