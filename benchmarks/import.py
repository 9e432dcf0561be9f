"""Batch import against its I/O floor, on SQLite (embedded) and on PostgreSQL with 2 worker processes.

    .venv/bin/python benchmarks/import.py                       # 2,000 and 20,000 images
    .venv/bin/python benchmarks/import.py --images 2000 5000 --databases sqlite postgres

Generates N ultrasound-like images (640×480 speckle JPEG, 1–3 traced polygons and a short report each,
two images per study) as a manifest batch, then times, each in a process of its own whose peak memory
(max RSS) is read from the kernel:

- **floor** — one process reading each file, hashing it, decoding it once and writing a 256-px
  thumbnail: what any importer must do;
- **sqlite** — ``manage.py import_batch`` on a fresh SQLite database, tasks in-process (the embedded
  default): thumbnails, report parsing and alignment included;
- **postgres** — ``import_batch`` on a fresh PostgreSQL database (named after ``DATABASE_URL``'s with
  ``_bench`` added), parsing and alignment fanned out to a Celery worker with 2 processes (Redis
  broker); timed until every thumbnail exists and every study is aligned.

With ``--repeat N`` (default 3) the three take turns N times on the same batch, each import's ratio
taken to the floor measured just before it, so that a slower spell of the machine weighs on both sides
of a ratio; the table gives the median of each (and the ratios of every turn). Prints each time,
images/s, ratio to the floor and peak memory. Needs ``DATABASE_URL`` pointing at a
PostgreSQL server whose user may create databases, and Redis (``--broker``) for the postgres run.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
REPORTS = ["Right lobe: solid hypoechoic nodule {s} cm, well defined, no calcification.",
           "Left lobe: mixed cystic and solid nodule {s} cm with smooth margins.",
           "Isthmus: isoechoic nodule {s} cm, wider than tall. TI-RADS 3."]


def batch_generate(out: Path, images: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    pick = random.Random(seed)
    (out / "images").mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0:480, 0:640]
    with (out / "manifest.jsonl").open("w") as manifest:
        for study in range(0, images, 2):
            entries = []
            for index in range(min(2, images - study)):
                speckle = rng.rayleigh(40, size=(480, 640)) * (1.2 - y / 800)
                cx, cy, rx, ry = pick.uniform(150, 490), pick.uniform(120, 360), pick.uniform(20, 80), pick.uniform(15, 60)
                speckle[((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 < 1] *= 0.35
                buffer = io.BytesIO()
                PILImage.fromarray(np.clip(speckle, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=85)
                name = f"images/{study + index:06d}.jpg"
                (out / name).write_bytes(buffer.getvalue())
                regions = []
                for k in range(pick.randint(1, 3)):
                    steps = pick.randint(20, 60)
                    scale = 1 - 0.2 * k
                    regions.append({"shape": "polygon", "label": "nodule", "id": f"{study + index}-{k}", "points": [
                        [round(cx + rx * scale * np.cos(2 * np.pi * t / steps) * pick.uniform(0.95, 1.05), 1),
                         round(cy + ry * scale * np.sin(2 * np.pi * t / steps) * pick.uniform(0.95, 1.05), 1)]
                        for t in range(steps)]})
                entries.append({"file": name, "laterality": "right", "pixel_spacing_mm": [0.08, 0.08],
                                "regions": regions})
            report = pick.choice(REPORTS).format(s=round(pick.uniform(0.4, 3.5), 1))
            manifest.write(json.dumps({"study": f"BENCH-{study:06d}", "patient": f"P-{study // 4:06d}",
                                       "report": {"text": report, "language": "en"}, "images": entries}) + "\n")


FLOOR = """
import hashlib, io, sys
from pathlib import Path
from PIL import Image
batch, out = Path(sys.argv[1]), Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
for path in sorted((batch / "images").iterdir()):
    content = path.read_bytes()
    digest = hashlib.sha256(content).hexdigest()
    with Image.open(io.BytesIO(content)) as image:
        image.load()
        image.thumbnail((256, 256))
        image.save(out / f"{digest}.jpg", "JPEG", quality=85)
"""


def timed(command: list[str], env: dict, *, until=None) -> tuple[float, float, float]:
    """Run ``command``; return its wall time until ``until()`` is true (if given), its peak RSS in MB,
    and its own wall time."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    if status:
        raise RuntimeError(f"{' '.join(command[:3])} failed: {process.stderr.read().decode()[-2000:]}")
    command_seconds = time.perf_counter() - started
    while until is not None and not until():
        time.sleep(0.5)
    return time.perf_counter() - started, usage.ru_maxrss / 1024, command_seconds


def run_sqlite(batch: Path, work: Path) -> tuple[float, float, float]:
    env = dict(os.environ, DEBUG="1", MEDIA_ROOT=str(work / "media-sqlite"),
               DATABASE_URL=f"sqlite:///{work / 'bench.sqlite3'}")
    env.pop("CELERY_BROKER_URL", None)
    subprocess.run([PYTHON, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True, capture_output=True)
    return timed([PYTHON, "manage.py", "import_batch", str(batch), "--dataset", "bench", "--create"], env)


def run_postgres(batch: Path, work: Path, *, images: int, base_url: str, broker: str) -> tuple[float, float, float]:
    import psycopg

    name = base_url.rsplit("/", 1)[1].split("?")[0] + "_bench"
    admin = base_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin.replace("postgres://", "postgresql://"), autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        connection.execute(f"CREATE DATABASE {name}")
    url = base_url.rsplit("/", 1)[0] + "/" + name
    prefix = f"bench{os.getpid()}-"
    env = dict(os.environ, DEBUG="1", MEDIA_ROOT=str(work / "media-postgres"), DATABASE_URL=url,
               CELERY_BROKER_URL=broker, CELERY_QUEUE_PREFIX=prefix)
    subprocess.run([PYTHON, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True, capture_output=True)
    worker = subprocess.Popen([PYTHON, "-m", "celery", "-A", "sonoalign", "worker", "-c", "2", "-l", "WARNING",
                               "-Q", f"{prefix}io,{prefix}nlp", "-n", f"{prefix}bench@localhost", "--without-gossip",
                               "--without-mingle", "--without-heartbeat"],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    time.sleep(5)

    def all_done() -> bool:
        with psycopg.connect(url.replace("postgres://", "postgresql://")) as connection:
            (thumbnails,) = connection.execute(
                "SELECT count(*) FROM annotation_image WHERE thumbnail <> ''").fetchone()
            (aligned,) = connection.execute(
                "SELECT count(*) FROM alignment_studyalignmentstate WHERE status IN ('done', 'failed')").fetchone()
        return thumbnails >= images and aligned >= (images + 1) // 2

    try:
        return timed([PYTHON, "manage.py", "import_batch", str(batch), "--dataset", "bench", "--create"], env,
                     until=all_done)
    finally:
        os.killpg(worker.pid, 15)
        worker.wait(timeout=60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--databases", nargs="+", choices=["sqlite", "postgres"], default=["sqlite", "postgres"])
    parser.add_argument("--repeat", type=int, default=3, help="turns of floor and imports (medians reported)")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL",
                                                                  "postgres://postgres@127.0.0.1:5432/sonoalign"))
    parser.add_argument("--broker", default=os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15"))
    args = parser.parse_args()
    print("| images | run | seconds (median) | images/s | ratio to floor (median; each turn) | peak memory |")
    print("| --- | --- | --- | --- | --- | --- |")
    for images in args.images:
        work = Path(tempfile.mkdtemp(prefix="bench-import-"))
        try:
            batch = work / "batch"
            batch_generate(batch, images)
            runs: dict[str, list[tuple[float, float, float]]] = {}  # run -> (seconds, MB, ratio) per turn
            commands: dict[str, list[float]] = {}
            for _ in range(max(1, args.repeat)):
                shutil.rmtree(work / "floor", ignore_errors=True)
                floor, floor_mb, _ = timed([PYTHON, "-c", FLOOR, str(batch), str(work / "floor")], dict(os.environ))
                runs.setdefault("floor", []).append((floor, floor_mb, 1.0))
                for database in args.databases:
                    for leftover in ("media-sqlite", "media-postgres", "bench.sqlite3", "bench.sqlite3-wal",
                                     "bench.sqlite3-shm"):
                        path = work / leftover
                        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
                    if database == "sqlite":
                        seconds, mb, _ = run_sqlite(batch, work)
                    else:
                        seconds, mb, command = run_postgres(batch, work, images=images, base_url=args.database_url,
                                                            broker=args.broker)
                        commands.setdefault(database, []).append(command)
                    runs.setdefault(database, []).append((seconds, mb, seconds / floor))
            for run, turns in runs.items():
                seconds = statistics.median(t[0] for t in turns)
                ratio = statistics.median(t[2] for t in turns)
                label = {"floor": "floor", "sqlite": "sqlite (embedded)"}.get(run) or \
                    f"postgres, 2 workers (command {statistics.median(commands[run]):.1f} s)"
                each = "" if run == "floor" else " (" + ", ".join(f"{t[2]:.2f}" for t in turns) + ")"
                print(f"| {images:,} | {label} | {seconds:.1f} | {images / seconds:.0f} | {ratio:.2f}x{each} "
                      f"| {max(t[1] for t in turns):.0f} MB |", flush=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
