"""Generated ultrasound-like scans whose lesion is known exactly, for the outline proposal tests."""

from __future__ import annotations

import math

import numpy as np
from shapely import contains_xy
from shapely.geometry import Polygon

WIDTH, HEIGHT = 480, 360
BANNER_ROWS = 28


def lesion_outline(cx: float = 230, cy: float = 170, rx: float = 70, ry: float = 48) -> Polygon:
    """A lobulated blob, not an ellipse, so that fitting an ellipse to the box is not enough."""
    angles = np.linspace(0, 2 * math.pi, 180, endpoint=False)
    wobble = 1 + 0.12 * np.sin(3 * angles + 0.4) + 0.06 * np.cos(5 * angles)
    return Polygon(np.c_[cx + rx * wobble * np.cos(angles), cy + ry * wobble * np.sin(angles)])


def scan(lesion: Polygon, *, calipers: bool = True, banner: bool = True, seed: int = 7) -> np.ndarray:
    """Speckle background, a darker lesion with brighter tissue below it (posterior enhancement), a
    burned-in banner with text at the top and caliper crosses at the ends of the lesion's long axis."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH] + 0.5
    inside = contains_xy(lesion, xs, ys)
    echo = np.full((HEIGHT, WIDTH), 120.0)
    echo[inside] = 60.0
    x0, _, x1, y1 = lesion.bounds
    below = (xs > x0 + 10) & (xs < x1 - 10) & (ys > y1) & (ys < y1 + 50)
    echo[below] = 150.0
    image = echo * rng.rayleigh(1.0, echo.shape) / math.sqrt(math.pi / 2)
    if banner:
        image[:BANNER_ROWS] = 0.0
        for column in range(10, WIDTH - 10, 9):  # glyph-like strokes of burned-in text
            image[8:20, column : column + 2] = 255.0
            image[8:10, column : column + 6] = 255.0
    if calipers:
        for x, y in caliper_marks(lesion):
            image[y - 5 : y + 6, x] = 255.0
            image[y, x - 5 : x + 6] = 255.0
    return np.clip(image, 0, 255).astype(np.uint8)


def caliper_marks(lesion: Polygon) -> list[tuple[int, int]]:
    x0, y0, x1, y1 = (int(round(v)) for v in lesion.bounds)
    middle = int(round(lesion.centroid.y))
    return [(x0 - 6, middle), (x1 + 6, middle)]
