"""Region save cost at the vertex cap: validation and measures of 5,000-point outlines against a floor.

    .venv/bin/python benchmarks/geometry.py [--points 5000] [--repeat 20]

What a region save spends on geometry is ``geometry_validate`` then ``geometry_measures`` (the service
calls nothing else that grows with the outline). The floor is what any save of the same outline costs
anyway: reading its JSON body and writing it back (``json.loads`` + ``json.dumps``). Outlines:

- ``convex``: a regular polygon, every point on the hull (the worst case for the axes);
- ``star``: a non-convex outline whose radius alternates, half its points on the hull;
- ``wobbly``: a closed random walk around a circle, as a hand-drawn trace looks;
- ``spikes``: radius alternating between 10 and 400 px, the adversarial case for the self-intersection
  check (every edge's box overlaps a large share of the others, so GEOS's validity test grows with n²
  here; the cap is what bounds it).

Each figure is the median of ``--repeat`` runs, all in one process, reported as a ratio to the floor
measured in the same run; the exhaustive O(n²) axes (the previous algorithm) are timed once on the
convex outline for comparison. Target: a save at the cap stays under 50 ms of server time.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from annotation.geometry import _axes, geometry_measures, geometry_shape, geometry_validate  # noqa: E402

SIZE = 1000


def outline(kind: str, count: int) -> dict:
    rng = random.Random(7)
    points = []
    for i in range(count):
        angle = 2 * math.pi * i / count
        if kind == "convex":
            radius = 400.0
        elif kind == "star":
            radius = 400.0 if i % 2 else 300.0
        elif kind == "spikes":
            radius = 400.0 if i % 2 else 10.0
        else:
            radius = 380.0 + 10 * math.sin(7 * angle) + rng.uniform(-2, 2)
        points.append([SIZE / 2 + radius * math.cos(angle), SIZE / 2 + radius * math.sin(angle)])
    return {"points": points}


def exhaustive_axes(coords) -> tuple[float, float]:
    best, pair = -1.0, (coords[0], coords[0])
    for i, a in enumerate(coords):
        for b in coords[i + 1:]:
            d = (a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2
            if d > best:
                best, pair = d, (a, b)
    long_axis = math.sqrt(best)
    ux, uy = (pair[1][0] - pair[0][0]) / long_axis, (pair[1][1] - pair[0][1]) / long_axis
    projections = [-uy * x + ux * y for x, y in coords]
    return long_axis, max(projections) - min(projections)


def median_seconds(action, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()

    print(f"{args.points:,}-point outlines on a {SIZE}×{SIZE} image, median of {args.repeat} runs\n")
    print(f"{'outline':<8} {'floor ms':>9} {'validate':>9} {'measure':>9} {'save':>9} {'save ms':>8}")
    for kind in ("convex", "star", "wobbly", "spikes"):
        body = json.dumps({"shape": "polygon", "geometry": outline(kind, args.points)})

        def floor(body=body):
            json.dumps(json.loads(body))

        geometry = json.loads(body)["geometry"]
        normal = geometry_validate("polygon", geometry, width=SIZE, height=SIZE)
        base = median_seconds(floor, args.repeat)
        validate = median_seconds(
            lambda geometry=geometry: geometry_validate("polygon", geometry, width=SIZE, height=SIZE), args.repeat)
        measure = median_seconds(
            lambda normal=normal: geometry_measures("polygon", normal, spacing_x_mm=0.08, spacing_y_mm=0.1),
            args.repeat)
        print(f"{kind:<8} {base * 1e3:>9.2f} {validate / base:>8.1f}× {measure / base:>8.1f}× "
              f"{(validate + measure) / base:>8.1f}× {(validate + measure) * 1e3:>8.1f}")

    hull = list(geometry_shape("polygon", outline("convex", args.points)).convex_hull.exterior.coords)[:-1]
    fast = median_seconds(lambda: _axes(hull), args.repeat)
    start = time.perf_counter()
    exhaustive_axes(hull)
    slow = time.perf_counter() - start
    print(f"\naxes of the convex outline: calipers {fast * 1e3:.2f} ms, exhaustive pairs {slow * 1e3:.0f} ms "
          f"({slow / fast:.0f}× slower, one run)")


if __name__ == "__main__":
    main()
