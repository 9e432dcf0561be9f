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
from dataclasses import dataclass
from typing import Any

from shapely import affinity
from shapely.geometry import LineString, Point, Polygon
from shapely.validation import explain_validity

SHAPES = ("polygon", "rectangle", "ellipse", "line", "point")
MAX_POINTS = 10_000
MAX_COORDINATE = 1_000_000.0
ELLIPSE_SEGMENTS = 64


class GeometryError(ValueError):
    """The geometry is not acceptable; the message says why in words a user can act on."""


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
        raise GeometryError(f"{what} must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise GeometryError(f"{what} must be a finite number")
    if abs(value) > MAX_COORDINATE:
        raise GeometryError(f"{what} is out of range ({value:g})")
    return value


def _points(geometry: dict, minimum: int, maximum: int = MAX_POINTS) -> list[tuple[float, float]]:
    raw = geometry.get("points")
    if not isinstance(raw, list):
        raise GeometryError("'points' must be a list of [x, y] pairs")
    if len(raw) < minimum:
        raise GeometryError(f"needs at least {minimum} point{'s' if minimum > 1 else ''}, got {len(raw)}")
    if len(raw) > maximum:
        raise GeometryError(f"has {len(raw)} points; at most {maximum} are accepted")
    points = []
    for index, pair in enumerate(raw):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise GeometryError(f"point {index} must be an [x, y] pair")
        points.append((_number(pair[0], f"point {index} x"), _number(pair[1], f"point {index} y")))
    return points


def _inside(points: list[tuple[float, float]], width: int, height: int) -> None:
    for index, (x, y) in enumerate(points):
        if x < 0 or y < 0 or x > width or y > height:
            raise GeometryError(
                f"point {index} ({x:g}, {y:g}) lies outside the image ({width}×{height} px)"
            )


def geometry_validate(shape: str, geometry: Any, *, width: int, height: int) -> dict:
    """Check ``geometry`` for ``shape`` on an image of ``width``×``height`` and return it normalised
    (floats, rectangle corners ordered, rotation in [0, 180)). Raises ``GeometryError``."""
    if shape not in SHAPES:
        raise GeometryError(f"unknown shape '{str(shape)[:32]}' (use one of {', '.join(SHAPES)})")
    if not isinstance(geometry, dict):
        raise GeometryError("geometry must be an object")
    if shape == "ellipse":
        center, radii = geometry.get("center"), geometry.get("radii")
        if not (isinstance(center, (list, tuple)) and len(center) == 2):
            raise GeometryError("ellipse needs 'center': [x, y]")
        if not (isinstance(radii, (list, tuple)) and len(radii) == 2):
            raise GeometryError("ellipse needs 'radii': [rx, ry]")
        cx, cy = _number(center[0], "center x"), _number(center[1], "center y")
        rx, ry = _number(radii[0], "radius x"), _number(radii[1], "radius y")
        rotation = _number(geometry.get("rotation", 0) or 0, "rotation") % 180.0
        if rx <= 0 or ry <= 0:
            raise GeometryError("ellipse radii must be greater than zero")
        normal = {"center": [cx, cy], "radii": [rx, ry], "rotation": rotation}
        minx, miny, maxx, maxy = geometry_shape(shape, normal).bounds
        # Half a pixel of tolerance: an ellipse drawn to the edge must not be refused for rounding.
        if minx < -0.5 or miny < -0.5 or maxx > width + 0.5 or maxy > height + 0.5:
            raise GeometryError(f"ellipse extends outside the image ({width}×{height} px)")
        return normal
    if shape == "polygon":
        points = _points(geometry, 3)
        if len(points) > 3 and points[0] == points[-1]:
            points = points[:-1]
        _inside(points, width, height)
        polygon = Polygon(points)
        if not polygon.exterior.is_simple:
            raise GeometryError(f"polygon crosses itself ({explain_validity(polygon)})")
        if polygon.area <= 0:
            raise GeometryError("polygon has no area (its points lie on one line)")
        if not polygon.is_valid:
            raise GeometryError(f"polygon is not valid ({explain_validity(polygon)})")
        return {"points": [[x, y] for x, y in points]}
    if shape == "rectangle":
        (x1, y1), (x2, y2) = _points(geometry, 2, 2)
        _inside([(x1, y1), (x2, y2)], width, height)
        if x1 == x2 or y1 == y2:
            raise GeometryError("rectangle has no area (its corners share an edge)")
        return {"points": [[min(x1, x2), min(y1, y2)], [max(x1, x2), max(y1, y2)]]}
    if shape == "line":
        points = _points(geometry, 2)
        _inside(points, width, height)
        if LineString(points).length <= 0:
            raise GeometryError("line has zero length")
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
        return Polygon(points)
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


def _axes(coords: list[tuple[float, float]]) -> tuple[float, float]:
    """Long axis (largest diameter) and short axis (largest extent perpendicular to it)."""
    if len(coords) < 2:
        return 0.0, 0.0
    best, pair = -1.0, (coords[0], coords[0])
    for i, a in enumerate(coords):
        for b in coords[i + 1 :]:
            d = (a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2
            if d > best:
                best, pair = d, (a, b)
    long_axis = math.sqrt(best)
    if long_axis == 0:
        return 0.0, 0.0
    ux, uy = (pair[1][0] - pair[0][0]) / long_axis, (pair[1][1] - pair[0][1]) / long_axis
    projections = [-uy * x + ux * y for x, y in coords]
    return long_axis, max(projections) - min(projections)


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

    def axes(scale_x: float, scale_y: float) -> tuple[float | None, float | None]:
        if shape == "point":
            return None, None
        if shape == "line":
            scaled = affinity.scale(geom, scale_x, scale_y, origin=(0, 0))
            return float(scaled.length), None
        hull = affinity.scale(geom, scale_x, scale_y, origin=(0, 0)).convex_hull
        return _axes(list(hull.exterior.coords)[:-1])

    long_px, short_px = axes(1.0, 1.0)
    long_mm, short_mm = axes(spacing_x_mm, spacing_y_mm) if has_mm else (None, None)
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
