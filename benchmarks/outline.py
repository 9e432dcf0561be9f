"""Assisted outlines on real thyroid ultrasound: IoU against hand-traced outlines, and time per proposal.

    .venv/bin/python benchmarks/outline.py
    .venv/bin/python benchmarks/outline.py --data /work/shared/data/thyroid-us-dev --worst 10

For every valid traced outline of the data set (DDTI thyroid images, see its README) it asks
`annotation.outline.outline_propose` twice — with the outline's bounding box, and with a click at the
outline's `representative_point` — and prints the median and 10th percentile IoU of each prompt type
next to the trivial answers measured the same way: the ellipse inscribed in the box, and a disc around
the click whose radius is the median equivalent radius of all traced outlines (a size the trivial answer
could only know from the truth, so it flatters the trivial side). A proposal that raises OutlineNotFound
counts as IoU 0.

Then it times proposals on the same images enlarged to 800x600, on one core, next to a trivial floor
(grayscale conversion and the inscribed ellipse), in one run. The worst cases of each prompt type are
written as PNG overlays to artifacts/outline/ (truth green, proposal red, prompt yellow).

The proposal's three learned parts (annotation/outline_box_net.npz, the networks that read a box;
annotation/outline_click_model.npz, the trees that choose a candidate around a click; and
annotation/outline_click_net.npz, the networks that find its extent from there) are fitted on these
tracings, so the figures of the shipped ones on them are in-sample. The honest figures come from
fitting on one half of the cases and measuring on the other:

    .venv/bin/python benchmarks/outline.py --fit --half even \
        --box-net /tmp/box-e.npz --click-net /tmp/cnet-e.npz --click-model /tmp/click-e.npz
    .venv/bin/python benchmarks/outline.py --half odd \
        --box-net /tmp/box-e.npz --click-net /tmp/cnet-e.npz --click-model /tmp/click-e.npz
    (and the same with even and odd swapped; `--fit` alone refits the shipped ones on all cases)

Fitting the networks needs PyTorch (the CPU wheel is enough; about 5 minutes for each set of three on
two cores); the proposals and the tests do not: the weights are exported as arrays and checked against
PyTorch's own output when they are written.
"""

from __future__ import annotations

import os

# One core, as the target says; set before numpy loads its thread pools.
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import xml.etree.ElementTree as ET  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402
from shapely.geometry import Point, Polygon  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import annotation.outline as outline_module  # noqa: E402
from annotation.outline import Forest, OutlineNotFound, outline_propose  # noqa: E402

DEFAULT_DATA = Path("/work/shared/data/thyroid-us-dev")


@dataclass
class Traced:
    image: Path
    outline: Polygon
    case: int

    @property
    def box(self) -> tuple[float, float, float, float]:
        return tuple(self.outline.bounds)

    @property
    def point(self) -> tuple[float, float]:
        p = self.outline.representative_point()
        return (p.x, p.y)


def traced_outlines(data: Path) -> tuple[list[Traced], dict[str, int]]:
    """Every usable outline; the rest counted by reason (empty or cut-short lists, missing files...)."""
    found: list[Traced] = []
    skipped: dict[str, int] = {}

    def skip(reason: str) -> None:
        skipped[reason] = skipped.get(reason, 0) + 1

    for path in sorted(data.glob("xml/*.xml"), key=lambda p: (len(p.stem), p.stem)):
        try:
            case = ET.parse(path).getroot()
        except ET.ParseError:
            skip("unreadable xml")
            continue
        number = (case.findtext("number") or path.stem).strip()
        for mark in case.findall("mark"):
            image = data / "images" / f"{number}_{(mark.findtext('image') or '').strip()}.jpg"
            text = (mark.findtext("svg") or "").strip()
            if not text:
                skip("empty outline list")
                continue
            if not image.exists():
                skip("image file missing")
                continue
            try:
                outlines = json.loads(text)
            except json.JSONDecodeError:
                skip("outline list cut short")
                continue
            for outline in outlines:
                points = [(p["x"], p["y"]) for p in outline.get("points", [])]
                if len(points) < 3:
                    skip("fewer than 3 points")
                    continue
                polygon = Polygon(points)
                if not polygon.is_valid:
                    # Hand tracing crosses itself now and then; keep the largest part it encloses.
                    repaired = polygon.buffer(0)
                    parts = getattr(repaired, "geoms", [repaired])
                    polygon = max(parts, key=lambda g: g.area)
                if polygon.area < 100:
                    skip("smaller than 100 px2")
                    continue
                found.append(Traced(image=image, outline=polygon, case=int(number) if number.isdigit() else 0))
    return found, skipped


def iou(a: Polygon, b: Polygon) -> float:
    union = a.union(b).area
    return a.intersection(b).area / union if union else 0.0


def inscribed_ellipse(box) -> Polygon:
    x0, y0, x1, y1 = box
    cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
    angles = np.linspace(0, 2 * math.pi, 64, endpoint=False)
    return Polygon(np.c_[cx + rx * np.cos(angles), cy + ry * np.sin(angles)])


def pixels_of(path: Path) -> np.ndarray:
    # RGB, as the endpoint reads it: coloured caliper marks are told apart by their colour.
    return np.asarray(Image.open(path).convert("RGB"))


def percentile_line(name: str, values: list[float]) -> str:
    values = np.asarray(values)
    return f"  {name:<34} median {np.median(values):.3f}   p10 {np.percentile(values, 10):.3f}   mean {values.mean():.3f}"


def overlay(path: Path, traced: Traced, proposal: Polygon | None, prompt, title: str, target: Path) -> None:
    image = Image.open(path).convert("RGB")
    draw = ImageDraw.Draw(image)
    draw.line(list(traced.outline.exterior.coords), fill=(0, 255, 0), width=1)
    if proposal is not None:
        draw.line(list(proposal.exterior.coords), fill=(255, 40, 40), width=1)
    if len(prompt) == 4:
        draw.rectangle(prompt, outline=(255, 230, 0))
    else:
        x, y = prompt
        draw.ellipse((x - 3, y - 3, x + 3, y + 3), outline=(255, 230, 0), width=2)
    draw.text((4, image.height - 14), title, fill=(255, 230, 0))
    image.save(target)


def measure_quality(outlines: list[Traced], worst: int, artifacts: Path | None) -> None:
    disc_radius = float(np.median([math.sqrt(t.outline.area / math.pi) for t in outlines]))
    scores = {"box": [], "point": [], "ellipse": [], "disc": []}
    cases = {"box": [], "point": []}
    failures = {"box": 0, "point": 0}
    loaded: dict[Path, np.ndarray] = {}
    for traced in outlines:
        pixels = loaded.setdefault(traced.image, pixels_of(traced.image))
        for kind, prompt in (("box", traced.box), ("point", traced.point)):
            try:
                proposal = outline_propose(pixels=pixels, **{kind: prompt})
                polygon = Polygon(proposal.points)
                value = iou(polygon, traced.outline)
            except OutlineNotFound:
                polygon, value = None, 0.0
                failures[kind] += 1
            scores[kind].append(value)
            cases[kind].append((value, traced, polygon, prompt))
        scores["ellipse"].append(iou(inscribed_ellipse(traced.box), traced.outline))
        scores["disc"].append(iou(Point(traced.point).buffer(disc_radius, 32), traced.outline))

    print(f"IoU against {len(outlines)} traced outlines")
    print(percentile_line("box prompt: proposal", scores["box"]))
    print(percentile_line("box prompt: inscribed ellipse", scores["ellipse"]))
    print(f"  {'':<34} proposal beats the ellipse on {np.mean(np.array(scores['box']) > scores['ellipse']):.0%}")
    print(percentile_line("point prompt: proposal", scores["point"]))
    print(percentile_line(f"point prompt: disc r={disc_radius:.0f} px", scores["disc"]))
    print(f"  {'':<34} proposal beats the disc on {np.mean(np.array(scores['point']) > scores['disc']):.0%}")
    print(f"  nothing found (counted as 0): box {failures['box']}, point {failures['point']}")

    if artifacts is None:
        return
    artifacts.mkdir(parents=True, exist_ok=True)
    for old in artifacts.glob("worst-*.png"):
        old.unlink()
    for kind in ("box", "point"):
        ranked = sorted(cases[kind], key=lambda case: case[0])[:worst]
        for rank, (value, traced, polygon, prompt) in enumerate(ranked, start=1):
            name = f"worst-{kind}-{rank:02d}-{traced.image.stem}.png"
            title = f"{traced.image.name} {kind} IoU {value:.2f}"
            overlay(traced.image, traced, polygon, prompt, title, artifacts / name)
        print(f"  worst {kind} cases: " + ", ".join(f"{c[1].image.stem} {c[0]:.2f}" for c in ranked))
    print(f"  overlays in {artifacts}")


def in_half(traced: Traced, half: str) -> bool:
    return half == "all" or (traced.case % 2 == 0) == (half == "even")


def fit_click_model(outlines: list[Traced], target: Path, extra_clicks: int = 2) -> None:
    """Fit the trees that rank candidate ellipses around a click: for every outline and every click (its
    representative point, and a few more drawn anywhere well inside it, as annotators click where they
    like), each candidate's features and its IoU with the tracing; the trees learn to predict that IoU."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    features, overlaps = [], []
    angles = np.linspace(0, 2 * math.pi, 48, endpoint=False)
    for traced in outlines:
        pixels = pixels_of(traced.image)
        longest = max(pixels.shape[:2])
        for x, y in [traced.point, *interior_points(traced, extra_clicks)]:
            window = outline_module._click_window(pixels, x, y)
            candidates = outline_module._click_candidates(x, y, longest)
            features.append(outline_module.click_candidate_features(window, candidates, longest))
            for cx, cy, rx, ry in candidates[:, :4]:
                overlaps.append(iou(Polygon(np.c_[cx + rx * np.cos(angles), cy + ry * np.sin(angles)]), traced.outline))
    model = HistGradientBoostingRegressor(
        max_iter=200, learning_rate=0.05, max_leaf_nodes=31, max_depth=5, min_samples_leaf=100, random_state=0
    )
    model.fit(np.vstack(features), np.asarray(overlaps))
    save_forest(model, np.vstack(features[:3]), target)
    print(f"click model fitted on {len(outlines)} outlines ({len(overlaps)} candidates), written to {target}")


def box_net_samples(outlines: list[Traced], per_outline: int, jitter: float, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """What the network reads of each outline's box, and the traced outline on the same grid (the share
    of each cell inside it): the exact box first, then boxes whose sides are moved by up to ``jitter``
    of the box's size, as an annotator's box is never exactly tight (a seed per case: the same each run)."""
    cells = outline_module.NET_CELLS
    inputs, targets = [], []
    for traced in outlines:
        pixels = pixels_of(traced.image)
        rng = np.random.default_rng(traced.case * 1000 + int(traced.outline.area))
        x0, y0, x1, y1 = traced.box
        for sample in range(per_outline):
            moved = rng.uniform(-jitter, jitter, 4) * (x1 - x0, y1 - y0, x1 - x0, y1 - y0) if sample else np.zeros(4)
            box = (x0 + moved[0], y0 + moved[1], x1 + moved[2], y1 + moved[3])
            inputs.append(outline_module.box_net_input(pixels, box, margin))
            fine = 4 * cells
            ring = np.asarray(traced.outline.exterior.coords)
            ring = np.column_stack(outline_module.NetGrid.around(box, margin).to_cells(ring[:, 0], ring[:, 1], fine))
            mask = Image.new("L", (fine, fine), 0)
            ImageDraw.Draw(mask).polygon([tuple(p) for p in ring], fill=255)
            targets.append(np.asarray(mask, np.float32).reshape(cells, 4, cells, 4).mean(axis=(1, 3)) / 255.0)
    return np.stack(inputs), np.stack(targets)


def fit_box_net(
    outlines: list[Traced],
    target: Path,
    *,
    margin: float,
    jitter: float,
    members: int = 3,
    steps: int = 600,
    width: int = 8,
    depth: int = 4,
) -> None:
    """Fit the small U-Nets that read a box (needs PyTorch, which proposing does not: the weights are
    exported as arrays with batch normalisation folded into the convolutions). Each member starts from
    its own seed; every step takes 32 of the prepared crops, mirrored at random and with their
    brightness and contrast varied, and lowers cross-entropy plus Dice loss."""
    try:
        import torch
        from torch import nn
        from torch.nn import functional as F
    except ImportError:
        sys.exit("Fitting the box network needs PyTorch (for instance the CPU wheel: pip install torch).")

    torch.set_num_threads(os.cpu_count() or 1)
    started = time.perf_counter()
    inputs, targets = box_net_samples(outlines, per_outline=48, jitter=jitter, margin=margin)
    print(f"network for {target.name}: {len(inputs)} crops of {len(outlines)} outlines prepared in {time.perf_counter() - started:.0f} s")
    cells = outline_module.NET_CELLS
    coordinates = torch.from_numpy(outline_module.net_coordinates(cells))
    inputs, targets = torch.from_numpy(inputs)[:, None], torch.from_numpy(targets)[:, None]

    def block(given: int, out: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(given, out, 3, padding=1),
            nn.BatchNorm2d(out),
            nn.ReLU(),
            nn.Conv2d(out, out, 3, padding=1),
            nn.BatchNorm2d(out),
            nn.ReLU(),
        )

    class UNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            widths = [width * 2**level for level in range(depth)]
            given = 4
            self.enc = nn.ModuleList()
            for out in widths:
                self.enc.append(block(given, out))
                given = out
            self.mid = block(given, 2 * given)
            given *= 2
            self.up, self.dec = nn.ModuleList(), nn.ModuleList()
            for out in reversed(widths):
                self.up.append(nn.ConvTranspose2d(given, out, 2, stride=2))
                self.dec.append(block(2 * out, out))
                given = out
            self.out = nn.Conv2d(given, 1, 1)

        def forward(self, x):
            skips = []
            for encode in self.enc:
                x = encode(x)
                skips.append(x)
                x = F.max_pool2d(x, 2)
            x = self.mid(x)
            for up, decode, skip in zip(self.up, self.dec, reversed(skips), strict=True):
                x = decode(torch.cat([up(x), skip], 1))
            return self.out(x)

    arrays: dict[str, np.ndarray] = {}

    def folded(prefix: str, sequence: nn.Sequential) -> None:
        for name, (conv, norm) in (("a", (sequence[0], sequence[1])), ("b", (sequence[3], sequence[4]))):
            scale = (norm.weight / torch.sqrt(norm.running_var + norm.eps)).detach()
            arrays[f"{prefix}.{name}.w"] = (conv.weight.detach() * scale[:, None, None, None]).numpy()
            arrays[f"{prefix}.{name}.b"] = ((conv.bias.detach() - norm.running_mean) * scale + norm.bias.detach()).numpy()

    for member in range(members):
        torch.manual_seed(member)
        generator = np.random.default_rng(member)
        net = UNet()
        optimiser = torch.optim.AdamW(net.parameters(), 2e-3, weight_decay=1e-4)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, 3e-3, total_steps=steps)
        net.train()
        for _ in range(steps):
            chosen = torch.from_numpy(generator.integers(0, len(inputs), 32))
            x, y = inputs[chosen].clone(), targets[chosen].clone()
            mirrored = torch.from_numpy(generator.random(32) < 0.5)
            x[mirrored], y[mirrored] = x[mirrored].flip(-1), y[mirrored].flip(-1)
            gamma = torch.from_numpy(np.exp(generator.uniform(-0.4, 0.4, (32, 1, 1, 1))).astype(np.float32))
            gain = torch.from_numpy(generator.uniform(0.8, 1.2, (32, 1, 1, 1)).astype(np.float32))
            offset = torch.from_numpy(generator.uniform(-0.1, 0.1, (32, 1, 1, 1)).astype(np.float32))
            x = x.clamp(0, 1) ** gamma * gain + offset
            logit = net(torch.cat([x, coordinates.expand(32, -1, -1, -1)], 1))
            probability = torch.sigmoid(logit)
            overlap = (probability * y).sum((1, 2, 3))
            dice = 1 - (2 * overlap + 1) / (probability.sum((1, 2, 3)) + y.sum((1, 2, 3)) + 1)
            loss = F.binary_cross_entropy_with_logits(logit, y) + dice.mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
        net.eval()
        for level, encode in enumerate(net.enc):
            folded(f"{member}.enc{level}", encode)
        folded(f"{member}.mid", net.mid)
        for index, (up, decode) in enumerate(zip(net.up, net.dec, strict=True)):
            level = depth - 1 - index
            arrays[f"{member}.up{level}.w"] = up.weight.detach().numpy()
            arrays[f"{member}.up{level}.b"] = up.bias.detach().numpy()
            folded(f"{member}.dec{level}", decode)
        arrays[f"{member}.out.w"] = net.out.weight.detach().numpy()
        arrays[f"{member}.out.b"] = net.out.bias.detach().numpy()
        # The arrays must give what the network gives.
        with torch.no_grad():
            sample = torch.cat([inputs[:2], coordinates.expand(2, -1, -1, -1)], 1)
            expected = net(sample).numpy()
        single = outline_module.BoxNet(
            arrays={k: v for k, v in arrays.items() if k.startswith(f"{member}.")}, members=1, depth=depth, margin=margin
        )
        got = single._logit(member, sample.numpy())
        assert np.allclose(got, expected, atol=1e-3), float(np.abs(got - expected).max())
        print(f"{target.name}: member {member + 1}/{members} fitted ({time.perf_counter() - started:.0f} s), last loss {loss.item():.3f}")
    arrays = {name: value.astype(np.float32) for name, value in arrays.items()}
    outline_module.BoxNet(arrays=arrays, members=members, depth=depth, margin=margin).save(target)
    print(f"network fitted on {len(outlines)} outlines, written to {target}")


def save_forest(model, sample: np.ndarray, target: Path) -> None:
    forest = forest_from(model)
    assert np.allclose(forest.predict(sample), model.predict(sample), atol=1e-6)
    forest.save(target)


def interior_points(traced: Traced, count: int) -> list[tuple[float, float]]:
    """Points drawn uniformly inside the outline, away from its edge (a seed per case: the same each run)."""
    radius = math.sqrt(traced.outline.area / math.pi)
    inner = traced.outline.buffer(-0.2 * radius)
    if inner.is_empty:
        return []
    rng = np.random.default_rng(traced.case * 1000 + int(traced.outline.area))
    x0, y0, x1, y1 = inner.bounds
    points: list[tuple[float, float]] = []
    for _ in range(200 * count):
        if len(points) == count:
            break
        x, y = rng.uniform(x0, x1), rng.uniform(y0, y1)
        if inner.contains(Point(x, y)):
            points.append((x, y))
    return points


def forest_from(model) -> Forest:
    """scikit-learn's fitted gradient-boosted trees as flat arrays, so that proposing needs neither
    scikit-learn nor pickle."""
    parts = {name: [] for name in ("feature", "threshold", "left", "right", "value")}
    roots, offset = [], 0
    for (tree,) in model._predictors:
        nodes = tree.nodes
        leaf = nodes["is_leaf"].astype(bool)
        rows = np.arange(len(nodes)) + offset
        roots.append(offset)
        parts["feature"].append(np.where(leaf, 0, nodes["feature_idx"]).astype(np.int32))
        parts["threshold"].append(np.where(leaf, np.inf, nodes["num_threshold"]))
        parts["left"].append(np.where(leaf, rows, nodes["left"].astype(np.int64) + offset))
        parts["right"].append(np.where(leaf, rows, nodes["right"].astype(np.int64) + offset))
        parts["value"].append(np.where(leaf, nodes["value"], 0.0))
        offset += len(nodes)
    arrays = {name: np.concatenate(values) for name, values in parts.items()}
    depth = int(max(tree[0].nodes["depth"].max() for tree in model._predictors))
    return Forest(**arrays, roots=np.asarray(roots), depth=depth, baseline=float(np.ravel(model._baseline_prediction)[0]))


def measure_time(outlines: list[Traced], count: int) -> None:
    width, height = 800, 600
    chosen = outlines[:: max(len(outlines) // count, 1)][:count]
    prepared = []
    for traced in chosen:
        image = Image.open(traced.image).convert("RGB")
        sx, sy = width / image.width, height / image.height
        x0, y0, x1, y1 = traced.box
        px, py = traced.point
        prepared.append((np.asarray(image.resize((width, height))), (x0 * sx, y0 * sy, x1 * sx, y1 * sy), (px * sx, py * sy)))

    def trivial(*, pixels, box):
        pixels = pixels.mean(axis=2, dtype=np.float32)
        return pixels.shape, inscribed_ellipse(box)

    timings = {"trivial": [], "box": [], "point": []}
    for _ in range(2):  # warm-up pass first, then the timed pass
        timings = {"trivial": [], "box": [], "point": []}
        for rgb, box, point in prepared:
            # Grayscale conversion counted in every timing, as the endpoint does it on every request.
            for kind, call, prompt in (
                ("trivial", trivial, {"box": box}),
                ("box", outline_propose, {"box": box}),
                ("point", outline_propose, {"point": point}),
            ):
                started = time.perf_counter()
                try:
                    call(pixels=rgb, **prompt)
                except OutlineNotFound:
                    pass
                timings[kind].append((time.perf_counter() - started) * 1000)
    print(f"Time per proposal, {width}x{height} RGB image, one core, {len(prepared)} prompts of each kind (ms)")
    floor = np.median(timings["trivial"])
    for kind in ("trivial", "box", "point"):
        values = np.asarray(timings[kind])
        p50, p95 = np.percentile(values, (50, 95))
        print(f"  {kind:<8} p50 {p50:7.1f}   p95 {p95:7.1f}   max {values.max():7.1f}   p50/floor {p50 / floor:6.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--worst", type=int, default=8, help="overlays written per prompt type")
    parser.add_argument("--timed", type=int, default=60, help="images timed at 800x600 (0: no timing)")
    parser.add_argument("--artifacts", type=Path, default=ROOT / "artifacts" / "outline")
    parser.add_argument("--no-artifacts", action="store_true")
    parser.add_argument("--limit", type=int, default=0, help="only the first N outlines (quick runs)")
    parser.add_argument("--half", choices=("all", "even", "odd"), default="all", help="only the outlines of even or odd case numbers")
    parser.add_argument(
        "--click-model", type=Path, default=outline_module.CLICK_MODEL, help="trees that rank the candidates around a click"
    )
    parser.add_argument("--box-net", type=Path, default=outline_module.BOX_NET, help="the network that reads a box")
    parser.add_argument("--click-net", type=Path, default=outline_module.CLICK_NET, help="the network that finds a clicked lesion's extent")
    parser.add_argument("--members", type=int, default=3, help="networks fitted (each from its own seed) and averaged")
    parser.add_argument(
        "--fit",
        action="store_true",
        help="fit the networks and the click trees on the chosen outlines, write them (--box-net, --click-net, --click-model), stop",
    )
    args = parser.parse_args()
    outline_module.CLICK_MODEL = args.click_model
    outline_module.BOX_NET = args.box_net
    outline_module.CLICK_NET = args.click_net
    if not (args.data / "xml").is_dir():
        sys.exit(f"No data set at {args.data} (expects xml/ and images/).")
    outlines, skipped = traced_outlines(args.data)
    outlines = [traced for traced in outlines if in_half(traced, args.half)]
    if args.limit:
        outlines = outlines[: args.limit]
    print(f"{len(outlines)} traced outlines ({args.half} cases); skipped: " + ", ".join(f"{k} {v}" for k, v in sorted(skipped.items())))
    if args.fit:
        # A box drawn around a lesion is nearly tight; a candidate around a click may be a third off.
        fit_box_net(outlines, args.box_net, margin=0.25, jitter=0.06, members=args.members)
        fit_box_net(outlines, args.click_net, margin=0.6, jitter=0.3, members=args.members)
        fit_click_model(outlines, args.click_model)
        return
    measure_quality(outlines, args.worst, None if args.no_artifacts else args.artifacts)
    if args.timed:
        measure_time(outlines, args.timed)


if __name__ == "__main__":
    main()
