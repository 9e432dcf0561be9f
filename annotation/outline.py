"""Assisted outlines: propose a lesion outline from one click or one box on a grayscale ultrasound image.

Pure functions over numpy arrays (scipy and shapely underneath); no Django, so the benchmark, the tests
and a notebook use it as the API does.

Method: a star-shaped contour around the prompt, found as the cheapest closed path in polar coordinates
(dynamic programming over rays, neighbouring rays may differ by a bounded step, so the outline is smooth
and always a simple polygon). The cost of putting the boundary at a given radius on a ray is

- an edge term: the outward contrast of the speckle-reduced image across the boundary; lesions are mostly
  darker than the parenchyma around them, so dark-inside/bright-outside is preferred (the polarity is
  measured from the prompt and flipped for the bright ones);
- a region term (click prompts): pixels unlike the ones around the click cost to include, pixels like
  them cost to leave out, so the outline grows as far as the lesion and no further;
- what a small network reads of the box (box prompts): three U-Nets, fitted on the development thyroid
  tracings (`benchmarks/outline.py --fit`), each read the box with a margin around it, and its mirror
  image, on a 48x48 grid, and say for every cell how likely it is lesion; a boundary costs less the more
  of that it encloses and the less of the rest. The network carries the shape a tracing usually has in
  its box (it is told where each cell lies in the box) as well as what the image shows, so the weak,
  partial edges of real ultrasound may only nudge it. The result is finally stretched to touch the four
  sides of the box, as a box drawn around a lesion is tight.

A click is first turned into a box: a few hundred candidate ellipses around it are described by the
contrast across their rim, inside against outside, texture and size, and trees fitted the same way
predict which overlaps the lesion best. A second set of networks, fitted on boxes up to a third off on
every side, reads the chosen candidate's box with a wide margin; the box of what it reads as lesion
under the click is the one outlined, so a candidate of the wrong size is corrected. Trees and
networks are stored as plain arrays beside this module and evaluated with numpy: proposing needs
neither scikit-learn, PyTorch nor pickle.

Before any of this, thin bright structures (caliper crosses, burned-in text, measurement dots) are
found with a white top-hat and filled from their surroundings, so they neither attract the boundary nor
count as lesion contrast.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage
from shapely.geometry import MultiPoint, Polygon

# Polar grid: rays around the centre and candidate radii on each ray.
RAYS = 96
BOX_RADII = 48
# Largest radius step (in grid cells) between neighbouring rays: what keeps the contour smooth.
MAX_STEP = 3
MAX_VERTICES = 200
MIN_BOX_SIDE = 4.0
# Straight bright runs at least this long (pixels) are taken for marks drawn on the image.
MARK_RUN = 7
# Channel spread above which a pixel of an RGB image is taken for a coloured mark (calipers, labels).
COLOUR_MARK = 40


class OutlinePromptError(ValueError):
    """The prompt cannot be used (outside the image, empty box, not a number); the message says why."""


class OutlineNotFound(Exception):
    """Nothing that looks like a lesion boundary was found around the prompt."""


@dataclass(frozen=True)
class OutlineProposal:
    points: list[tuple[float, float]]  # one outer ring in image pixels, not closed by repetition
    score: float  # 0..1: how clearly the image shows a boundary where the outline runs


def outline_propose(
    *,
    pixels: np.ndarray,
    point: Sequence[float] | None = None,
    box: Sequence[float] | None = None,
    exclude: Sequence[Sequence[float]] = (),
    max_vertices: int = MAX_VERTICES,
) -> OutlineProposal:
    """Propose the outline of the lesion under ``point`` (a click inside it) or inside ``box``.

    ``pixels`` is a 2-D grayscale image (an RGB array is averaged to gray); coordinates are image pixels,
    x right and y down. ``exclude`` are clicks that are not lesion: the outline is kept from enclosing
    them. Raises ``OutlinePromptError`` for an unusable prompt and ``OutlineNotFound`` when the image
    shows no boundary around it.
    """
    image = _image(pixels)
    height, width = image.shape[:2]
    if (point is None) == (box is None):
        raise OutlinePromptError("Give either a point or a box.")
    excluded = [_xy(p, "exclude point", width, height) for p in exclude]
    if box is not None:
        x0, y0, x1, y1 = _box(box, width, height)
        return _propose_in_box(image, (x0, y0, x1, y1), excluded, max_vertices)
    cx, cy = _xy(point, "point", width, height)
    return _propose_from_point(image, (cx, cy), excluded, max_vertices)


# --- prompts ------------------------------------------------------------------------------------------


def _image(pixels: np.ndarray) -> np.ndarray:
    image = np.asarray(pixels)
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))) or min(image.shape[:2]) < 8:
        raise OutlinePromptError("The image must be a grayscale or RGB picture of at least 8x8 pixels.")
    return image


def _gray(crop: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """A crop as float gray, and where it is coloured: B-mode is gray, so colour is drawn on it."""
    if crop.ndim == 2:
        return crop.astype(np.float32), None
    red, green, blue = (crop[:, :, channel].astype(np.float32) for channel in range(3))
    spread = np.maximum(np.maximum(red, green), blue) - np.minimum(np.minimum(red, green), blue)
    coloured = ndimage.maximum_filter((spread > COLOUR_MARK).view(np.uint8), size=3).astype(bool)
    return (red + green + blue) / 3.0, coloured


def _number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise OutlinePromptError(f"The {what} must be numbers.")
    number = float(value)
    if not math.isfinite(number):
        raise OutlinePromptError(f"The {what} must be finite numbers.")
    return number


def _pair(value, what: str) -> tuple[float, float]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise OutlinePromptError(f"The {what} must be two numbers [x, y].")
    return _number(value[0], what), _number(value[1], what)


def _xy(value, what: str, width: int, height: int) -> tuple[float, float]:
    x, y = _pair(value, what)
    if not (0 <= x <= width and 0 <= y <= height):
        raise OutlinePromptError(f"The {what} ({x:g}, {y:g}) lies outside the {width}x{height} image.")
    return x, y


def _box(value, width: int, height: int) -> tuple[float, float, float, float]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 4:
        raise OutlinePromptError("The box must be four numbers [x0, y0, x1, y1].")
    x0, y0, x1, y1 = (_number(v, "box corners") for v in value)
    x0, x1 = sorted((x0, x1))
    y0, y1 = sorted((y0, y1))
    if x1 < 0 or y1 < 0 or x0 > width or y0 > height:
        raise OutlinePromptError(f"The box lies outside the {width}x{height} image.")
    x0, x1 = max(x0, 0.0), min(x1, float(width))
    y0, y1 = max(y0, 0.0), min(y1, float(height))
    if x1 - x0 < MIN_BOX_SIDE or y1 - y0 < MIN_BOX_SIDE:
        raise OutlinePromptError(f"The box is too small: both sides must be at least {MIN_BOX_SIDE:g} pixels inside the image.")
    return x0, y0, x1, y1


# --- image preparation --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Window:
    """A crop of the image, speckle-reduced, with its offset in the image."""

    smooth: np.ndarray
    top: int
    left: int
    spread: float  # robust spread of the smoothed intensities: the unit of contrast


def _window(image: np.ndarray, x0: float, y0: float, x1: float, y1: float, sigma: float) -> _Window:
    height, width = image.shape[:2]
    top, bottom = max(int(y0) - 1, 0), min(int(math.ceil(y1)) + 2, height)
    left, right = max(int(x0) - 1, 0), min(int(math.ceil(x1)) + 2, width)
    crop, coloured = _gray(image[top:bottom, left:right])
    marks = _burned_in_marks(crop)
    if coloured is not None:
        marks |= coloured
    keep = ~marks
    weight = ndimage.gaussian_filter(keep.astype(np.float32), sigma)
    smooth = ndimage.gaussian_filter(np.where(keep, crop, 0.0).astype(np.float32), sigma)
    smooth = smooth / np.maximum(weight, 1e-3)
    low, high = np.percentile(smooth, (10, 90))
    spread = float(max(high - low, 1e-6)) / 2.56  # the 10-90 range of a normal is 2.56 sigma
    return _Window(smooth=smooth, top=top, left=left, spread=spread)


def _burned_in_marks(crop: np.ndarray) -> np.ndarray:
    """Caliper crosses and text drawn in white: bright, thin, with vertical strokes. Tissue echoes are
    as bright and thin, but they lie across the beam (horizontal); speckle grains do not line up."""
    scale = float(np.percentile(crop, 99)) or 1.0
    tophat = crop - ndimage.grey_opening(crop, size=(5, 5))
    bright = (tophat > 0.3 * scale) & (crop > 0.75 * scale)
    # Opening with a vertical run, then a generous dilation, as min/max filters (separable, fast).
    bright = bright.view(np.uint8)
    strokes = ndimage.maximum_filter(ndimage.minimum_filter(bright, size=(MARK_RUN, 1)), size=(MARK_RUN, 1))
    return ndimage.maximum_filter(strokes, size=(5, 11)).astype(bool)


# --- the contour --------------------------------------------------------------------------------------


def _angles() -> np.ndarray:
    return np.linspace(0.0, 2.0 * math.pi, RAYS, endpoint=False)


def _sample(window: _Window, cx: float, cy: float, radii: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """Smoothed intensity at radii (rays x samples) along each ray from (cx, cy)."""
    xs = cx - window.left + radii * np.cos(angles)[:, None]
    ys = cy - window.top + radii * np.sin(angles)[:, None]
    return ndimage.map_coordinates(window.smooth, [ys.ravel() - 0.5, xs.ravel() - 0.5], order=1, mode="nearest").reshape(radii.shape)


def _closed_path(cost: np.ndarray, max_step: int = MAX_STEP) -> np.ndarray:
    """Cheapest closed path through cost (rays x radii): one radius index per ray, neighbours (the last
    and the first ray included) at most max_step apart."""
    rays, count = cost.shape
    inf = np.float64(np.inf)
    # total[s, j]: cheapest path that started at radius s on ray 0 and is at radius j now.
    total = np.full((count, count), inf)
    total[np.arange(count), np.arange(count)] = cost[0]
    back = np.zeros((rays, count, count), dtype=np.int8)
    for ray in range(1, rays):
        best = total.copy()
        choice = np.zeros((count, count), dtype=np.int8)
        for shift in range(1, max_step + 1):
            for sign in (-1, 1):
                moved = np.full_like(total, inf)
                if sign < 0:
                    moved[:, shift:] = total[:, :-shift]  # came from a smaller radius
                else:
                    moved[:, :-shift] = total[:, shift:]  # came from a larger radius
                better = moved < best
                best = np.where(better, moved, best)
                choice = np.where(better, sign * shift, choice)
        back[ray] = choice
        total = best + cost[ray]
    index = np.arange(count)
    closes = np.abs(index[:, None] - index[None, :]) <= max_step
    total = np.where(closes, total, inf)
    start, end = np.unravel_index(np.argmin(total), total.shape)
    path = np.empty(rays, dtype=np.int64)
    path[-1] = end
    for ray in range(rays - 1, 0, -1):
        path[ray - 1] = path[ray] + back[ray, start, path[ray]]
    return path


def _edge_contrast(window: _Window, cx, cy, radii, angles, reach) -> np.ndarray:
    """Outward contrast across each candidate boundary, in units of the window's spread."""
    outside = _sample(window, cx, cy, radii + reach, angles)
    inside = _sample(window, cx, cy, np.maximum(radii - reach, 0.0), angles)
    return (outside - inside) / window.spread


def _ring(cx: float, cy: float, radii: np.ndarray, angles: np.ndarray) -> list[tuple[float, float]]:
    return [(cx + r * math.cos(a), cy + r * math.sin(a)) for r, a in zip(radii, angles, strict=True)]


def _finish(points, score: float, max_vertices: int) -> OutlineProposal:
    polygon = Polygon(points)
    tolerance = 0.35
    simplified = polygon
    while len(simplified.exterior.coords) - 1 > max_vertices:
        simplified = polygon.simplify(tolerance, preserve_topology=True)
        tolerance *= 1.5
    if len(simplified.exterior.coords) - 1 > 12:
        polygon = simplified.simplify(0.35, preserve_topology=True)
    ring = [(round(x, 1), round(y, 1)) for x, y in polygon.exterior.coords[:-1]]
    return OutlineProposal(points=ring, score=round(float(min(max(score, 0.0), 1.0)), 3))


def _contrast_score(contrast: float) -> float:
    return 1.0 - math.exp(-max(contrast, 0.0) / 1.5)


def _forbid_excluded(cost, cx, cy, radii, angles, excluded) -> None:
    """An excluded click must stay outside: on the rays that pass by it, radii beyond it are forbidden."""
    for ex, ey in excluded:
        distance = math.hypot(ex - cx, ey - cy)
        if distance < 1.0:
            continue
        direction = math.atan2(ey - cy, ex - cx)
        gap = np.abs((angles - direction + math.pi) % (2 * math.pi) - math.pi)
        near = gap * distance < 3.0 + distance * 0.05
        near[np.argmin(gap)] = True
        for ray in np.flatnonzero(near):
            blocked = radii[ray] >= distance * 0.95
            blocked[0] = False  # always leave one radius open
            cost[ray, blocked] = np.inf


def _polarity(window: _Window, cx, cy, inner: np.ndarray, outer: np.ndarray, angles) -> float:
    """+1 when the lesion is darker than what surrounds it (the usual case), -1 when brighter."""
    inside = np.median(_sample(window, cx, cy, inner, angles))
    outside = np.median(_sample(window, cx, cy, outer, angles))
    return 1.0 if outside >= inside else -1.0


# Weights of the cost terms, fitted on the development thyroid images (see benchmarks/outline.py).
BOX_EDGE = 0.5
BOX_SIGMA = 0.2
BOX_REACH = 0.05
EDGE_CLIP = 1.0
BOX_REGION = 0.05
BOX_READ = 6.0  # what the network reads of the box, which the edges may only nudge
POINT_REACH = 0.3  # largest lesion radius looked for, as a share of the image's longer side
POINT_TYPICAL = 0.095  # typical lesion radius, same unit (the median of the development outlines)
POINT_SIZE_PRIOR = 1.0
POINT_MIN_EVIDENCE = 0.1
POINT_BRIGHT = 0.5
VOID_LEVEL = 0.06  # below this share of the bright end, a pixel is outside the scanned sector
POINT_MAX_VOID = 0.1


@dataclass(frozen=True)
class _BoxFrame:
    """A box prompt in polar terms: rays from the box centre, each as long as the box lets it be."""

    window: _Window
    cx: float
    cy: float
    half_w: float
    half_h: float
    angles: np.ndarray
    to_box: np.ndarray  # distance from the centre to the box's edge along each ray
    to_ellipse: np.ndarray  # ... and to the inscribed ellipse


def _box_frame(image: np.ndarray, box) -> _BoxFrame:
    x0, y0, x1, y1 = box
    half_w, half_h = (x1 - x0) / 2, (y1 - y0) / 2
    sigma = float(np.clip(min(half_w, half_h) * BOX_SIGMA, 1.0, 6.0))
    margin = max(half_w, half_h) * 0.5 + 3 * sigma
    window = _window(image, x0 - margin, y0 - margin, x1 + margin, y1 + margin, sigma)
    angles = _angles()
    cos, sin = np.abs(np.cos(angles)), np.abs(np.sin(angles))
    to_box = np.minimum(half_w / np.maximum(cos, 1e-9), half_h / np.maximum(sin, 1e-9))
    to_ellipse = 1.0 / np.sqrt((cos / half_w) ** 2 + (sin / half_h) ** 2)
    return _BoxFrame(window, (x0 + x1) / 2, (y0 + y1) / 2, half_w, half_h, angles, to_box, to_ellipse)


def _propose_in_box(image, box, excluded, max_vertices, stretch=True) -> OutlineProposal:
    x0, y0, x1, y1 = box
    frame = _box_frame(image, box)
    window, angles, to_box, to_ellipse = frame.window, frame.angles, frame.to_box, frame.to_ellipse
    cx, cy, half_w, half_h = frame.cx, frame.cy, frame.half_w, frame.half_h
    size = min(half_w, half_h)
    fractions = np.linspace(0.25, 1.0, BOX_RADII)
    radii = to_box[:, None] * fractions[None, :]

    polarity = _polarity(window, cx, cy, to_ellipse[:, None] * np.linspace(0, 0.6, 8), to_box[:, None] * np.linspace(1.05, 1.25, 4), angles)
    reach = max(2.0, BOX_REACH * size)
    contrast = polarity * _edge_contrast(window, cx, cy, radii, angles, reach)
    inside_level = np.median(_sample(window, cx, cy, to_ellipse[:, None] * np.linspace(0, 0.6, 8), angles))
    outside_level = np.median(_sample(window, cx, cy, to_box[:, None] * np.linspace(1.05, 1.25, 4), angles))
    values = _sample(window, cx, cy, radii, angles)
    likeness = ((values - outside_level) ** 2 - (values - inside_level) ** 2) / window.spread**2
    # Cumulative along each ray: the region a boundary at this radius encloses.
    region = -np.cumsum(np.clip(likeness, -4, 4), axis=1) * (fractions[1] - fractions[0]) * 10
    # What the network reads as lesion, along the rays: a boundary at a radius costs less the more
    # lesion it takes in and the less of anything else.
    net = _box_net(BOX_NET)
    columns, rows = NetGrid.around(box, net.margin).to_cells(cx + radii * np.cos(angles)[:, None], cy + radii * np.sin(angles)[:, None])
    probability = net.read(image, box)
    lesion = ndimage.map_coordinates(probability, [rows - 0.5, columns - 0.5], order=1, mode="nearest") - 0.5
    read = -np.cumsum(lesion, axis=1) * (fractions[1] - fractions[0]) * 10
    cost = -BOX_EDGE * np.clip(contrast, -EDGE_CLIP, EDGE_CLIP) + BOX_REGION * region + BOX_READ * read
    _forbid_excluded(cost, cx, cy, radii, angles, excluded)
    path = _closed_path(cost)
    chosen = radii[np.arange(RAYS), path]
    along = float(np.mean(contrast[np.arange(RAYS), path]))
    points = np.array(_ring(cx, cy, chosen, angles))
    if stretch:
        stretched = _stretch(points, x0, y0, x1, y1)
        # Unless that would take in a point the annotator excluded.
        if not excluded or not Polygon(stretched).intersects(MultiPoint(excluded)):
            points = stretched
    if window.spread < 1e-3:
        raise OutlineNotFound("The image is blank inside the box: there is no boundary to follow.")
    return _finish([tuple(p) for p in points], _contrast_score(along), max_vertices)


def _stretch(points: np.ndarray, x0, y0, x1, y1) -> np.ndarray:
    """A box drawn around a lesion is tight: stretch the outline so that it touches all four sides."""
    low, high = points.min(axis=0), points.max(axis=0)
    span = np.maximum(high - low, 1e-6)
    return (points - low) / span * np.array([x1 - x0, y1 - y0]) + np.array([x0, y0])


def _click_candidates(cx: float, cy: float, longest: int) -> np.ndarray:
    """Ellipses around a click: centre x, y, radii x, y, then size, aspect and offset (in radii) of each."""
    reach = POINT_REACH * longest
    sizes = np.geomspace(max(6.0, 0.02 * longest), reach, 14)
    return np.array(
        [
            (
                cx + dx * size / math.sqrt(aspect),
                cy + dy * size * math.sqrt(aspect),
                size / math.sqrt(aspect),
                size * math.sqrt(aspect),
                size,
                aspect,
                dx,
                dy,
            )
            for size in sizes
            for aspect in (0.55, 0.75, 1.0, 1.3)
            for dx in (-0.3, 0.0, 0.3)
            for dy in (-0.3, 0.0, 0.3)
        ]
    )


def _click_window(image: np.ndarray, cx: float, cy: float) -> _Window:
    longest = max(image.shape[:2])
    sigma = float(np.clip(0.004 * longest, 1.0, 3.0))
    margin = 1.4 * POINT_REACH * longest + 3 * sigma
    return _window(image, cx - margin, cy - margin, cx + margin, cy + margin, sigma)


def click_candidate_features(window: _Window, candidates: np.ndarray, longest: int) -> np.ndarray:
    """What the image shows of each candidate ellipse (rows as candidates): the contrast across its rim
    and between inside and outside, how even that contrast is around it, the texture inside and around,
    how much of its ring runs off the scanned sector, its size, aspect and offset; the first eight also
    standardised over the candidates of this click, as the choice is among them."""
    angles = np.linspace(0.0, 2.0 * math.pi, 48, endpoint=False)

    def rim(scale: float) -> np.ndarray:
        xs = candidates[:, 0:1] + candidates[:, 2:3] * scale * np.cos(angles) - window.left
        ys = candidates[:, 1:2] + candidates[:, 3:4] * scale * np.sin(angles) - window.top
        return ndimage.map_coordinates(window.smooth, [ys.ravel() - 0.5, xs.ravel() - 0.5], order=1, mode="nearest").reshape(xs.shape)

    inside = np.concatenate([rim(scale) for scale in (0.3, 0.55, 0.8)], axis=1)
    ring = np.concatenate([rim(scale) for scale in (1.15, 1.3)], axis=1)
    step = (rim(1.12) - rim(0.9)) / window.spread
    region = (ring.mean(axis=1) - inside.mean(axis=1)) / window.spread
    far = (rim(1.6).mean(axis=1) - ring[:, : len(angles)].mean(axis=1)) / window.spread
    # Outside the scanned sector the image is black: an ellipse whose ring runs there has no boundary
    # of tissue to show, only the end of the picture.
    void = np.mean(ring < VOID_LEVEL * float(np.percentile(window.smooth, 99)), axis=1)
    log_size = np.log(candidates[:, 4] / (POINT_TYPICAL * longest))
    log_aspect = np.log(candidates[:, 5])
    mean_step = step.mean(axis=1)
    evidence = mean_step + region
    measured = np.column_stack(
        [
            mean_step,
            np.percentile(step, 25, axis=1),
            (step > 0).mean(axis=1),
            region,
            inside.std(axis=1) / window.spread,
            ring.std(axis=1) / window.spread,
            far,
            void,
        ]
    )
    standardised = (measured - measured.mean(axis=0)) / (measured.std(axis=0) + 1e-6)
    return np.column_stack(
        [
            measured,
            log_size,
            log_aspect,
            np.abs(candidates[:, 6]),
            np.abs(candidates[:, 7]),
            log_size**2,
            log_aspect**2,
            mean_step * region,
            np.maximum(evidence, 0.0),
            np.minimum(evidence, 0.0),
            standardised,
        ]
    )


@dataclass(frozen=True)
class Forest:
    """Regression trees as flat arrays (one row per node, trees one after another), evaluated with numpy:
    a node sends a sample left when its feature is at most the threshold; a leaf is its own child on
    both sides, so every sample walks ``depth`` steps and stays at its leaf once there."""

    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray  # row of the left child
    right: np.ndarray
    value: np.ndarray  # leaf values (zero for inner nodes)
    roots: np.ndarray
    depth: int
    baseline: float

    def predict(self, features: np.ndarray) -> np.ndarray:
        # All trees at once, one level a step: (trees x samples) node rows.
        samples = np.arange(len(features))[None, :]
        node = np.repeat(self.roots[:, None], len(features), axis=1)
        for _ in range(self.depth):
            goes_left = features[samples, self.feature[node]] <= self.threshold[node]
            node = np.where(goes_left, self.left[node], self.right[node])
        return self.baseline + self.value[node].sum(axis=0)

    def save(self, path) -> None:
        np.savez_compressed(path, **{name: getattr(self, name) for name in self.__dataclass_fields__})

    @classmethod
    def load(cls, path) -> Forest:
        with np.load(path) as saved:
            arrays = {name: saved[name] for name in ("feature", "threshold", "left", "right", "value", "roots")}
            return cls(**arrays, depth=int(saved["depth"]), baseline=float(saved["baseline"]))


# --- the network that reads a box ---------------------------------------------------------------------

# A box and a margin around it are read on a square grid of this many cells a side.
NET_CELLS = 48
BOX_NET = Path(__file__).with_name("outline_box_net.npz")
# The same kind of network, fitted on boxes up to a third too large or too small on each side and
# reading a wider margin: it finds the extent of the lesion around a click from the candidate chosen.
CLICK_NET = Path(__file__).with_name("outline_click_net.npz")


@dataclass(frozen=True)
class NetGrid:
    """The grid a network reads for a box: NET_CELLS cells a side over the box and ``margin`` (a share of
    each side) around it. Cell edges fall on whole numbers, so cell i spans i..i+1."""

    cx: float
    cy: float
    half_x: float
    half_y: float

    @classmethod
    def around(cls, box, margin: float) -> NetGrid:
        x0, y0, x1, y1 = box
        scale = 1.0 + 2.0 * margin
        return cls((x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2 * scale, (y1 - y0) / 2 * scale)

    def to_cells(self, x, y, cells: int = NET_CELLS):
        """Image points as (column, row) positions on the grid."""
        return (x - self.cx + self.half_x) / (2 * self.half_x) * cells, (y - self.cy + self.half_y) / (2 * self.half_y) * cells

    def to_image(self, column, row, cells: int = NET_CELLS):
        """Grid positions as image points (x, y)."""
        return self.cx - self.half_x + column / cells * 2 * self.half_x, self.cy - self.half_y + row / cells * 2 * self.half_y


def box_net_input(image: np.ndarray, box, margin: float) -> np.ndarray:
    """What the network reads of a box: NET_CELLS x NET_CELLS cells over the box and its margin, of the
    image with its burned-in marks filled, smoothed to the size of a cell and scaled to 0..1 by the
    crop's own 1st and 99th percentiles. Cells beyond the image are black, as the image's own edge is."""
    grid = NetGrid.around(box, margin)
    cx, cy, hx, hy = grid.cx, grid.cy, grid.half_x, grid.half_y
    cell = 2.0 * max(hx, hy) / NET_CELLS
    sigma = max(1.0, 0.5 * cell)
    reach = 3.0 * sigma + 1.0
    window = _window(image, cx - hx - reach, cy - hy - reach, cx + hx + reach, cy + hy + reach, sigma)
    xs, ys = grid.to_image(np.arange(NET_CELLS) + 0.5, np.arange(NET_CELLS) + 0.5)
    ys, xs = np.meshgrid(ys - window.top - 0.5, xs - window.left - 0.5, indexing="ij")
    values = ndimage.map_coordinates(window.smooth, [ys, xs], order=1, mode="constant", cval=0.0)
    low, high = np.percentile(values, (1, 99))
    if high - low < 1e-6:
        return np.zeros((NET_CELLS, NET_CELLS), dtype=np.float32)
    return np.clip((values - low) / (high - low), 0.0, 1.0).astype(np.float32)


def net_coordinates(cells: int) -> np.ndarray:
    """Where each cell lies in the grid (x and y from -1 to 1, and the distance from the middle): the
    network's sense of the box, given as three more input channels."""
    steps = (np.arange(cells, dtype=np.float32) + 0.5) / cells * 2.0 - 1.0
    ys, xs = np.meshgrid(steps, steps, indexing="ij")
    return np.stack([xs, ys, np.sqrt(xs**2 + ys**2)])


def _conv3(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """3x3 convolution with one cell of zero padding, as one matrix product."""
    n, channels, height, width = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    columns = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(2, 3))
    columns = columns.transpose(0, 2, 3, 1, 4, 5).reshape(n * height * width, channels * 9)
    out = columns @ weight.reshape(len(weight), -1).T + bias
    return out.reshape(n, height, width, -1).transpose(0, 3, 1, 2)


def _pool(x: np.ndarray) -> np.ndarray:
    n, channels, height, width = x.shape
    return x.reshape(n, channels, height // 2, 2, width // 2, 2).max(axis=(3, 5))


def _up(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """2x2 transposed convolution with stride 2: every cell becomes four."""
    n, _, height, width = x.shape
    out = np.einsum("nchw,coij->nohiwj", x, weight).reshape(n, weight.shape[1], 2 * height, 2 * width)
    return out + bias[None, :, None, None]


@dataclass(frozen=True)
class BoxNet:
    """Small U-Nets (an encoder of ``depth`` levels, each two 3x3 convolutions with batch normalisation
    folded in, and a decoder with skip connections) as plain arrays, evaluated with numpy. Each member
    reads the crop and its mirror image; their probabilities are averaged."""

    arrays: dict[str, np.ndarray]
    members: int
    depth: int
    margin: float  # what it reads around a box, as a share of each side

    def read(self, image: np.ndarray, box) -> np.ndarray:
        """Probability that each cell of the box's grid (NetGrid) is lesion."""
        return self.probability(box_net_input(image, box, self.margin))

    def _block(self, name: str, x: np.ndarray) -> np.ndarray:
        for conv in ("a", "b"):
            x = np.maximum(_conv3(x, self.arrays[f"{name}.{conv}.w"], self.arrays[f"{name}.{conv}.b"]), 0.0)
        return x

    def _logit(self, member: int, x: np.ndarray) -> np.ndarray:
        skips = []
        for level in range(self.depth):
            x = self._block(f"{member}.enc{level}", x)
            skips.append(x)
            x = _pool(x)
        x = self._block(f"{member}.mid", x)
        for level in reversed(range(self.depth)):
            x = _up(x, self.arrays[f"{member}.up{level}.w"], self.arrays[f"{member}.up{level}.b"])
            x = self._block(f"{member}.dec{level}", np.concatenate([x, skips[level]], axis=1))
        out = self.arrays[f"{member}.out.w"]
        return np.einsum("nchw,oc->nohw", x, out.reshape(out.shape[0], -1)) + self.arrays[f"{member}.out.b"][None, :, None, None]

    def probability(self, cells: np.ndarray) -> np.ndarray:
        """Probability that each cell is lesion, for a box_net_input grid."""
        size = cells.shape[-1]
        coordinates = net_coordinates(size)
        x = np.stack([np.concatenate([cells[None], coordinates]), np.concatenate([cells[None, :, ::-1], coordinates])])
        total = np.zeros((size, size), dtype=np.float64)
        for member in range(self.members):
            logit = np.clip(self._logit(member, x.astype(np.float32)), -30.0, 30.0)
            probability = 1.0 / (1.0 + np.exp(-logit))
            total += probability[0, 0] + probability[1, 0, :, ::-1]
        return total / (2 * self.members)

    def save(self, path) -> None:
        # Half precision on disk (half the size; the probabilities move by about 0.001), single in use.
        halves = {name: value.astype(np.float16) for name, value in self.arrays.items()}
        np.savez_compressed(path, members=self.members, depth=self.depth, margin=self.margin, **halves)

    @classmethod
    def load(cls, path) -> BoxNet:
        with np.load(path) as saved:
            settings = ("members", "depth", "margin")
            arrays = {name: saved[name].astype(np.float32) for name in saved.files if name not in settings}
            return cls(arrays=arrays, members=int(saved["members"]), depth=int(saved["depth"]), margin=float(saved["margin"]))


@functools.cache
def _box_net(path: Path) -> BoxNet:
    return BoxNet.load(path)


# Which candidate ellipse around a click best matches the lesion is learned: trees fitted on the
# development thyroid tracings predict each candidate's overlap with the traced outline from its
# features (benchmarks/outline.py --fit writes this file; its README says on which cases and how well).
CLICK_MODEL = Path(__file__).with_name("outline_click_model.npz")


@functools.cache
def _forest(path: Path) -> Forest:
    return Forest.load(path)


def _propose_from_point(image, point, excluded, max_vertices) -> OutlineProposal:
    """Find the lesion's extent first (the best of a few hundred ellipses around the click, as the
    learned model ranks them by what the image shows of each), then outline it as inside a box."""
    cx, cy = point
    height, width = image.shape[:2]
    longest = max(height, width)
    window = _click_window(image, cx, cy)
    if window.spread < 1e-3:
        raise OutlineNotFound("The image is blank around the click: there is no boundary to follow.")
    candidates = _click_candidates(cx, cy, longest)
    features = click_candidate_features(window, candidates, longest)
    # Columns 0, 3 and 7: mean step across the rim, inside/outside contrast, share of ring off the sector.
    evidence = features[:, 0] + features[:, 3]
    evidence = np.maximum(evidence, -POINT_BRIGHT * evidence)
    in_sector = features[:, 7] <= POINT_MAX_VOID
    if not in_sector.any() or evidence[in_sector].max() < POINT_MIN_EVIDENCE:
        raise OutlineNotFound("No lesion boundary was found around the click; try a box around the lesion.")
    predicted = np.where(in_sector, _forest(CLICK_MODEL).predict(features), -np.inf)
    ex, ey, rx, ry = candidates[int(np.argmax(predicted)), :4]
    box = (max(ex - rx, 0.0), max(ey - ry, 0.0), min(ex + rx, float(width)), min(ey + ry, float(height)))
    return _propose_in_box(image, _lesion_box(image, point, box), excluded, max_vertices)


def _lesion_box(image: np.ndarray, point, box) -> tuple[float, float, float, float]:
    """The box the clicked lesion fills: the click network reads the chosen candidate's box with a wide
    margin, and the part it reads as lesion under the click (or its largest part) gives the box. The
    candidate's box stays when the network finds nothing."""
    net = _box_net(CLICK_NET)
    grid = NetGrid.around(box, net.margin)
    labels, count = ndimage.label(net.read(image, box) > 0.5)
    if not count:
        return box
    column, row = (int(np.clip(at, 0, NET_CELLS - 1)) for at in grid.to_cells(*point))
    part = labels[row, column] or 1 + int(np.argmax(np.bincount(labels.ravel())[1:]))
    rows, columns = np.nonzero(labels == part)
    height, width = image.shape[:2]
    x0, y0 = (max(at, 0.0) for at in grid.to_image(columns.min(), rows.min()))
    x1, y1 = grid.to_image(columns.max() + 1, rows.max() + 1)
    x1, y1 = min(x1, float(width)), min(y1, float(height))
    if x1 - x0 < MIN_BOX_SIDE or y1 - y0 < MIN_BOX_SIDE:
        return box
    return x0, y0, x1, y1
