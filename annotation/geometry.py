"""Region geometry: validation, measures in pixels and millimetres, overlap.

Pure functions over plain data (shapely underneath), shared by the API, the importer, the exporters and
the alignment engine, so that all of them agree on what a valid region is and how big it is.

Formats, in image pixels (x right, y down):
- polygon: ``{"points": [[x, y], ...]}`` (3 or more points, simple, not closed by repetition)
- rectangle: ``{"points": [[x1, y1], [x2, y2]]}`` (two opposite corners)
- ellipse: ``{"center": [cx, cy], "radii": [rx, ry], "rotation": degrees}``
- line: ``{"points": [[x, y], ...]}`` (2 or more points: a caliper or a polyline)
- point: ``{"points": [[x, y]]}``
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from shapely import affinity, get_coordinates
from shapely.geometry import LineString, Point, Polygon
from shapely.validation import explain_validity

from .messages import Message, gettext_noop

SHAPES = ("polygon", "rectangle", "ellipse", "line", "point")
# Default cap on the points of one polygon or line; callers pass their configured cap (the app reads
# ``REGION_MAX_VERTICES``). Validation and measures are O(n log n), so the cap bounds the work a single
# save can ask of the server; hand-drawn outlines stay far below it. At 2,500 points even an outline
# crafted to be slow to check (every edge near another) is saved in about 20 ms (benchmarks/geometry.py).
MAX_POINTS = 2_500
MAX_COORDINATE = 1_000_000.0
ELLIPSE_SEGMENTS = 64
BRUTE_FORCE_AXES = 96  # hull vertices up to which the axes compare every pair


class GeometryError(ValueError):
    """The geometry is not acceptable; the message (a ``Message``) says why in words a user can act on."""

    def __init__(self, template: str, **params: Any):
        self.message = Message(template, **params)
        super().__init__(self.message)


@dataclass(frozen=True)
class Measures:
    bbox: list[float]  # [x, y, width, height] in pixels
    area_px: float
    area_mm2: float | None
    long_axis_mm: float | None
    short_axis_mm: float | None
    long_axis_px: float | None
    short_axis_px: float | None

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise GeometryError(gettext_noop("%(what)s must be a number, got %(type)s"), what=what, type=type(value).__name__)
    try:
        value = float(value)
    except OverflowError:  # a JSON integer such as 10**400 parses as an int no float can hold
        raise GeometryError(gettext_noop("%(what)s is out of range (too large a number)"), what=what) from None
    if not math.isfinite(value):
        raise GeometryError(gettext_noop("%(what)s must be a finite number"), what=what)
    if abs(value) > MAX_COORDINATE:
        raise GeometryError(gettext_noop("%(what)s is out of range (%(value)s)"), what=what, value=f"{value:g}")
    return value


def _points_plain(raw: list) -> list[tuple[float, float]] | None:
    """``raw`` as float pairs when every item is an ``[x, y]`` pair of finite numbers within range (the
    common case, checked in bulk); None when any is not, for ``_points`` to name the first bad one."""
    for pair in raw:
        kind = type(pair)
        if (kind is not list and kind is not tuple) or len(pair) != 2:
            return None
        x, y = pair
        kind_x, kind_y = type(x), type(y)
        if (kind_x is not float and kind_x is not int) or (kind_y is not float and kind_y is not int):
            return None
    try:
        values = np.array(raw, dtype=float).reshape(-1, 2)
    except OverflowError:
        return None
    if not (np.isfinite(values).all() and (np.abs(values) <= MAX_COORDINATE).all()):
        return None
    return [(x, y) for x, y in values.tolist()]


def _polygon(points) -> Polygon:
    """A shapely polygon of an outline's points (made in one call, not point by point)."""
    return shapely.polygons(np.asarray(points, dtype=float).reshape(-1, 2))


def _points(geometry: dict, minimum: int, maximum: int = MAX_POINTS) -> list[tuple[float, float]]:
    raw = geometry.get("points")
    if not isinstance(raw, list):
        raise GeometryError(gettext_noop("'points' must be a list of [x, y] pairs"))
    if len(raw) < minimum:
        raise GeometryError(gettext_noop("needs at least %(minimum)s points, got %(count)s") if minimum > 1 else
                            gettext_noop("needs at least %(minimum)s point, got %(count)s"), minimum=minimum, count=len(raw))
    if len(raw) > maximum:
        raise GeometryError(gettext_noop("has %(count)s points; a region may have at most %(maximum)s (simplify the outline)"),
                            count=f"{len(raw):,}", maximum=f"{maximum:,}")
    fast = _points_plain(raw)
    if fast is not None:
        return fast
    points = []
    for index, pair in enumerate(raw):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise GeometryError(gettext_noop("point %(index)s must be an [x, y] pair"), index=index)
        points.append((_number(pair[0], Message(gettext_noop("point %(index)s x"), index=index)),
                       _number(pair[1], Message(gettext_noop("point %(index)s y"), index=index))))
    return points


def _inside(points: list[tuple[float, float]], width: int, height: int) -> None:
    for index, (x, y) in enumerate(points):
        if x < 0 or y < 0 or x > width or y > height:
            raise GeometryError(gettext_noop("point %(index)s (%(x)s, %(y)s) lies outside the image (%(width)s×%(height)s px)"),
                                index=index, x=f"{x:g}", y=f"{y:g}", width=width, height=height)


def geometry_validate(shape: str, geometry: Any, *, width: int, height: int, max_points: int = MAX_POINTS) -> dict:
    """Check ``geometry`` for ``shape`` on an image of ``width``×``height`` and return it normalised
    (floats, rectangle corners ordered, rotation in [0, 180)). Polygons and lines may have at most
    ``max_points`` points. Raises ``GeometryError``."""
    if shape not in SHAPES:
        raise GeometryError(gettext_noop("unknown shape '%(shape)s' (use one of %(shapes)s)"), shape=str(shape)[:32],
                            shapes=", ".join(SHAPES))
    if not isinstance(geometry, dict):
        raise GeometryError(gettext_noop("geometry must be an object"))
    if shape == "ellipse":
        center, radii = geometry.get("center"), geometry.get("radii")
        if not (isinstance(center, (list, tuple)) and len(center) == 2):
            raise GeometryError(gettext_noop("ellipse needs 'center': [x, y]"))
        if not (isinstance(radii, (list, tuple)) and len(radii) == 2):
            raise GeometryError(gettext_noop("ellipse needs 'radii': [rx, ry]"))
        cx, cy = _number(center[0], Message(gettext_noop("center x"))), _number(center[1], Message(gettext_noop("center y")))
        rx, ry = _number(radii[0], Message(gettext_noop("radius x"))), _number(radii[1], Message(gettext_noop("radius y")))
        rotation = _number(geometry.get("rotation", 0) or 0, Message(gettext_noop("rotation"))) % 180.0
        if rx <= 0 or ry <= 0:
            raise GeometryError(gettext_noop("ellipse radii must be greater than zero"))
        normal = {"center": [cx, cy], "radii": [rx, ry], "rotation": rotation}
        minx, miny, maxx, maxy = geometry_shape(shape, normal).bounds
        # Half a pixel of tolerance: an ellipse drawn to the edge must not be refused for rounding.
        if minx < -0.5 or miny < -0.5 or maxx > width + 0.5 or maxy > height + 0.5:
            raise GeometryError(gettext_noop("ellipse extends outside the image (%(width)s×%(height)s px)"), width=width, height=height)
        return normal
    if shape == "polygon":
        points = _points(geometry, 3, max_points)
        if len(points) > 3 and points[0] == points[-1]:
            points = points[:-1]
        _inside(points, width, height)
        polygon = _polygon(points)
        # One validity pass on the accepted path (a valid polygon's outline is simple and encloses an
        # area); the further checks run only on a refused outline, to name what is wrong with it.
        if not polygon.is_valid or polygon.area <= 0:
            if not polygon.exterior.is_simple:
                raise GeometryError(gettext_noop("polygon crosses itself (%(where)s)"), where=explain_validity(polygon))
            if polygon.area <= 0:
                raise GeometryError(gettext_noop("polygon has no area (its points lie on one line)"))
            raise GeometryError(gettext_noop("polygon is not valid (%(where)s)"), where=explain_validity(polygon))
        return {"points": [[x, y] for x, y in points]}
    if shape == "rectangle":
        (x1, y1), (x2, y2) = _points(geometry, 2, 2)
        _inside([(x1, y1), (x2, y2)], width, height)
        if x1 == x2 or y1 == y2:
            raise GeometryError(gettext_noop("rectangle has no area (its corners share an edge)"))
        return {"points": [[min(x1, x2), min(y1, y2)], [max(x1, x2), max(y1, y2)]]}
    if shape == "line":
        points = _points(geometry, 2, max_points)
        _inside(points, width, height)
        if LineString(points).length <= 0:
            raise GeometryError(gettext_noop("line has zero length"))
        return {"points": [[x, y] for x, y in points]}
    points = _points(geometry, 1, 1)
    _inside(points, width, height)
    return {"points": [[points[0][0], points[0][1]]]}


def geometry_shape(shape: str, geometry: dict):
    """The shapely geometry of a normalised region (ellipses become 64-gons)."""
    if shape == "ellipse":
        (cx, cy), (rx, ry) = geometry["center"], geometry["radii"]
        circle = Point(cx, cy).buffer(1.0, quad_segs=ELLIPSE_SEGMENTS // 4)
        return affinity.rotate(affinity.scale(circle, rx, ry), geometry.get("rotation", 0), origin=(cx, cy))
    points = geometry["points"]
    if shape == "polygon":
        return _polygon(points)
    if shape == "rectangle":
        (x1, y1), (x2, y2) = points
        return Polygon([(x1, y1), (x2, y1), (x2, y2), (x1, y2)])
    if shape == "line":
        return LineString(points)
    return Point(points[0])


def geometry_polygon_points(shape: str, geometry: dict) -> list[list[float]]:
    """Outline points of an area shape (for COCO segmentation and masks); [] for lines and points."""
    if shape not in ("polygon", "rectangle", "ellipse"):
        return []
    return [[round(x, 2), round(y, 2)] for x, y in list(geometry_shape(shape, geometry).exterior.coords)[:-1]]


def _axes(coords: Sequence[Sequence[float]] | np.ndarray) -> tuple[float, float]:
    """Long axis (largest diameter) and short axis (largest extent perpendicular to it) of a convex
    polygon given by its vertices in order around it (no repeated closing vertex).

    Up to ``BRUTE_FORCE_AXES`` vertices every pair is compared. Above, rotating calipers, vectorised: the
    vertex farthest from each edge is the one whose turning angle brackets the edge's inward normal,
    found by a binary search over the monotone edge angles; the diameter is among those antipodal pairs
    (O(n log n) rather than all n² pairs). Either way, equally long diameters
    resolve to the first pair in vertex order, as an exhaustive search does, so the short axis is measured
    across the same diameter.
    """
    n = len(coords)
    if n < 2:
        return 0.0, 0.0
    points = np.asarray(coords, dtype=float)
    xs, ys = points[:, 0], points[:, 1]
    if n <= BRUTE_FORCE_AXES:
        # Few vertices (a hand-drawn outline's hull has a few dozen): every pair at once is quicker than
        # the calipers' bookkeeping. Row-major order finds the first of equally long pairs.
        squared = np.triu((xs[:, None] - xs[None, :]) ** 2 + (ys[:, None] - ys[None, :]) ** 2, 1)
        a, b = divmod(int(squared.argmax()), n)
        best = float(squared[a, b])
        if best == 0:
            return 0.0, 0.0
        return _axes_across(xs, ys, a, b, best)
    index = np.arange(n)
    following = np.roll(index, -1)
    ex, ey = xs[following] - xs, ys[following] - ys
    turn = 1.0 if float(np.sum(xs * ys[following] - xs[following] * ys)) >= 0 else -1.0
    # Edge angles increase around a counter-clockwise convex polygon (mirror a clockwise one).
    angles = np.unwrap(np.arctan2(turn * ey, ex))
    around = np.concatenate([angles, angles + 2 * np.pi])
    far = np.searchsorted(around, angles + np.pi) % n
    # Neighbours of the found vertex cover parallel edges (two antipodal vertices) and rounding.
    ends = [(far + step) % n for step in (-1, 0, 1)]
    first = np.concatenate([start for start in (index, following) for _ in ends])
    second = np.concatenate([end for _ in (index, following) for end in ends])
    first, second = np.minimum(first, second), np.maximum(first, second)
    keep = first < second
    first, second = first[keep], second[keep]
    squared = (xs[first] - xs[second]) ** 2 + (ys[first] - ys[second]) ** 2
    best = float(squared.max())
    if best == 0:
        return 0.0, 0.0
    tied = squared == best
    order = np.lexsort((second[tied], first[tied]))[0]
    return _axes_across(xs, ys, int(first[tied][order]), int(second[tied][order]), best)


def _axes_across(xs: np.ndarray, ys: np.ndarray, a: int, b: int, best: float) -> tuple[float, float]:
    """The long axis from vertex ``a`` to ``b`` (``best`` its squared length) and the outline's extent
    across it."""
    long_axis = math.sqrt(best)
    ux, uy = float(xs[b] - xs[a]) / long_axis, float(ys[b] - ys[a]) / long_axis
    projections = -uy * xs + ux * ys
    return long_axis, float(projections.max() - projections.min())


def geometry_measures(
    shape: str, geometry: dict, *, spacing_x_mm: float | None = None, spacing_y_mm: float | None = None
) -> Measures:
    """Bounding box, area and axes of a normalised region. Millimetre values are None unless both
    pixel spacings are known; anisotropic spacing is honoured by scaling before measuring."""
    geom = geometry_shape(shape, geometry)
    minx, miny, maxx, maxy = geom.bounds
    bbox = [round(minx, 2), round(miny, 2), round(maxx - minx, 2), round(maxy - miny, 2)]
    has_mm = bool(spacing_x_mm and spacing_y_mm)
    area_px = float(geom.area)

    # The hull of the scaled outline is the scaled hull: found once, measured in pixels and in mm.
    hull = get_coordinates(geom.convex_hull.exterior)[:-1] if shape not in ("point", "line") else None

    def axes(scale_x: float, scale_y: float) -> tuple[float | None, float | None]:
        if shape == "point":
            return None, None
        if shape == "line":
            scaled = affinity.scale(geom, scale_x, scale_y, origin=(0, 0))
            return float(scaled.length), None
        return _axes(hull * (scale_x, scale_y))

    long_px, short_px = axes(1.0, 1.0)
    if not has_mm:
        long_mm, short_mm = None, None
    elif spacing_x_mm == spacing_y_mm and shape not in ("line", "point"):
        # Square pixels scale every length alike: the same diameters, in millimetres.
        long_mm, short_mm = long_px * spacing_x_mm, short_px * spacing_x_mm
    else:
        long_mm, short_mm = axes(spacing_x_mm, spacing_y_mm)
    return Measures(
        bbox=bbox,
        area_px=round(area_px, 3),
        area_mm2=round(area_px * spacing_x_mm * spacing_y_mm, 3) if has_mm else None,
        long_axis_mm=None if long_mm is None else round(long_mm, 2),
        short_axis_mm=None if short_mm is None else round(short_mm, 2),
        long_axis_px=None if long_px is None else round(long_px, 2),
        short_axis_px=None if short_px is None else round(short_px, 2),
    )


def geometry_iou(shape_a: str, geometry_a: dict, shape_b: str, geometry_b: dict) -> float:
    """Intersection over union of two area regions; 0.0 when either has no area."""
    a, b = geometry_shape(shape_a, geometry_a), geometry_shape(shape_b, geometry_b)
    if a.area <= 0 or b.area <= 0:
        return 0.0
    union = a.union(b).area
    return float(a.intersection(b).area / union) if union else 0.0


def _polygon_parts(geom) -> list[Polygon]:
    """The polygons with an area inside any shapely geometry (collections and multi-parts unpacked)."""
    if isinstance(geom, Polygon):
        return [geom] if geom.area > 0 else []
    return [part for child in getattr(geom, "geoms", []) for part in _polygon_parts(child)]


def polygon_repair(points: Any, *, width: int, height: int,
                   max_points: int = MAX_POINTS) -> tuple[list[list[float]], list[Message]]:
    """Make a hand-drawn outline acceptable to ``geometry_validate`` as a polygon, saying what changed.

    Returns ``(points, warnings)``. A valid outline inside the image comes back unchanged with no
    warning. Otherwise: an outline that crosses or touches itself is made valid (shapely
    ``make_valid``) and, when that yields several parts, the largest is kept and the rest named; a
    hole is filled (a region has one outline); points past the image edge are clipped to it. Every
    change is a warning, the last giving the area before and after. Raises ``GeometryError`` only for
    what cannot be a region: fewer than 3 distinct points, no area, nothing inside the image.
    """
    from shapely import make_valid
    from shapely.geometry import box

    parsed = _points({"points": points}, 0, max_points)
    distinct: list[tuple[float, float]] = []
    for point in parsed:
        if not distinct or distinct[-1] != point:
            distinct.append(point)
    while len(distinct) > 1 and distinct[0] == distinct[-1]:
        distinct.pop()
    if len(set(distinct)) < 3:
        raise GeometryError(gettext_noop("an outline needs at least 3 distinct points, got %(count)s"), count=len(set(distinct)))
    source = _polygon(distinct)
    outside = [(x, y) for x, y in distinct if x < 0 or y < 0 or x > width or y > height]
    if source.is_valid and source.area > 0 and not outside:
        return [[x, y] for x, y in distinct], []

    warnings: list[Message] = []
    shape = source
    if not source.is_valid:
        # "structure" unions the rings an outline makes when it loops over itself, instead of
        # alternating filled and empty areas the way the even-odd ("linework") rule does.
        shape = make_valid(source, method="structure", keep_collapsed=False)
        warnings.append(Message(gettext_noop("the outline crosses itself (%(where)s); made valid"),
                               where=explain_validity(source)))
    parts = _polygon_parts(shape)
    if not parts:
        raise GeometryError(gettext_noop("polygon has no area (its points lie on one line)"))
    before = sum(part.area for part in parts)
    if outside:
        frame = box(0, 0, width, height)
        parts = [piece for part in parts for piece in _polygon_parts(part.intersection(frame))]
        if not parts:
            raise GeometryError(gettext_noop("all of the outline lies outside the image (%(width)s×%(height)s px)"), width=width,
                                    height=height)
        farthest = max(max(-x, -y, x - width, y - height) for x, y in outside)
        template = (gettext_noop("%(count)s points outside the image (%(width)s×%(height)s px, up to %(past)s px "
                                 "past the edge) clipped to it") if len(outside) > 1 else
                    gettext_noop("%(count)s point outside the image (%(width)s×%(height)s px, up to %(past)s px "
                                 "past the edge) clipped to it"))
        warnings.append(Message(template, count=len(outside), width=width, height=height, past=f"{farthest:.3g}"))
    parts.sort(key=lambda part: part.area, reverse=True)
    kept = parts[0]
    if len(parts) > 1:
        rest = sum(part.area for part in parts[1:])
        warnings.append(Message(gettext_noop("kept the largest of %(parts)s parts; dropped %(dropped)s of %(area)s px² in "
                                            "all"), parts=len(parts), dropped=len(parts) - 1, area=f"{rest:,.1f}"))
    if kept.interiors:
        warnings.append(Message(gettext_noop("filled %(count)s holes (a region has one outline)")
                               if len(kept.interiors) > 1 else
                               gettext_noop("filled %(count)s hole (a region has one outline)"), count=len(kept.interiors)))
        kept = Polygon(kept.exterior)
    coords = [[min(max(float(x), 0.0), float(width)), min(max(float(y), 0.0), float(height))]
              for x, y in list(kept.exterior.coords)[:-1]]
    after = Polygon(coords).area
    warnings.append(Message(gettext_noop("area %(before)s px² as drawn, %(after)s px² kept"),
                           before=f"{before:,.1f}", after=f"{after:,.1f}"))
    return coords, warnings
