"""Lesions and images of the synthetic demo: what each lesion is, where it lies, how it is drawn.

A *lesion entity* is one lesion with its true attributes, location and its drawing on one or two images
(orthogonal views). It is a pure function of (seed, body part, entity id), so studies may share entities
(the `image_pool` option of `study_plan`) and with them the rendered files, while every region stays
consistent with its pixels. Survey images (no lesion) work the same way.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .lexicon import body_system
from .truth import birads_category, tirads_assessment

IMAGE_SIZES = ((640, 480), (720, 540), (768, 576), (800, 600))
TOP_PX = 40  # field starts below the header line
BOTTOM_PX = 56  # body marker and labels sit below the field
CONVEX_R0 = 110  # convex probe: radius of the skin line from the virtual apex, pixels
VIEW_ABBREV = {"transverse": "TRV", "longitudinal": "LON", "radial": "RAD", "antiradial": "ARAD"}
SIDE_ABBREV = {"right": "RT", "left": "LT"}
# The UDAF internal characteristic that says a thyroid nodule's TI-RADS composition.
COMPOSITION_INTERNAL = {
    "cystic_or_almost_completely_cystic": "cystic_components",
    "mixed_cystic_and_solid": "mixed_cystic_and_solid_mass",
    "solid_or_almost_completely_solid": "solid_components",
}


def weighted(rng: random.Random, values: tuple, weights: tuple[float, ...]) -> object:
    """One of `values` drawn with `weights` (cumulative sums cached; cheaper than `Random.choices`)."""
    cumulative = _cumulative(weights)
    return values[bisect.bisect(cumulative, rng.random() * cumulative[-1])]


@lru_cache(maxsize=64)
def _cumulative(weights: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(itertools.accumulate(weights))


@dataclass(frozen=True)
class LesionView:
    """One drawing of a lesion entity on one image."""

    view: str
    width: int
    height: int
    spacing: float
    probe: str
    shape: str
    geometry: dict
    size_mm: tuple[float, float]
    body_marker: str
    render_key: str


@dataclass(frozen=True)
class LesionEntity:
    """A lesion's truth independent of study: attributes, location, sizes and its views."""

    body_part: str
    label: str
    attributes: dict
    assessment: dict
    laterality: str
    clock: str | None
    distance_cm: float | None
    site: tuple[str, ...]
    views: tuple[LesionView, ...]


@dataclass(frozen=True)
class SurveyImage:
    """A lesion-free image (normal survey view)."""

    width: int
    height: int
    spacing: float
    probe: str
    laterality: str
    view: str
    body_marker: str
    render_key: str


# --- field of view -------------------------------------------------------------------------------------
def field_of_view(width: int, height: int, probe: str) -> dict:
    """Imaging field in pixels. Linear: a rectangle {x0,y0,x1,y1}. Convex: an annular sector around a
    virtual apex above the image {cx, cy, r0, r1, half_angle (radians)}; depth runs along the radius."""
    y0, y1 = TOP_PX, height - BOTTOM_PX
    if probe == "linear":
        margin = round(width * 0.09)
        return {"probe": "linear", "x0": margin, "y0": y0, "x1": width - margin, "y1": y1}
    r0 = CONVEX_R0
    r1 = r0 + (y1 - y0)
    half = min(math.radians(34), math.asin((width / 2 - 24) / r1))
    return {"probe": "convex", "cx": width / 2, "cy": y0 - r0, "r0": r0, "r1": r1, "half_angle": half}


def field_point(fov: dict, lateral: float, depth_px: float) -> tuple[float, float]:
    """Pixel position of a point `depth_px` below the skin line at lateral fraction `lateral` ∈ [-1, 1]."""
    if fov["probe"] == "linear":
        half = (fov["x1"] - fov["x0"]) / 2
        return fov["x0"] + half + lateral * half, fov["y0"] + depth_px
    theta = lateral * fov["half_angle"]
    radius = fov["r0"] + depth_px
    return fov["cx"] + radius * math.sin(theta), fov["cy"] + radius * math.cos(theta)


def in_field(fov: dict, x: float, y: float, margin: float = 0.0) -> bool:
    """Whether pixel (x, y) lies inside the field, at least `margin` pixels from its edge."""
    if fov["probe"] == "linear":
        return fov["x0"] + margin <= x <= fov["x1"] - margin and fov["y0"] + margin <= y <= fov["y1"] - margin
    dx, dy = x - fov["cx"], y - fov["cy"]
    radius = math.hypot(dx, dy)
    if not fov["r0"] + margin <= radius <= fov["r1"] - margin:
        return False
    return abs(math.atan2(dx, dy)) <= fov["half_angle"] - margin / radius


# --- outlines ------------------------------------------------------------------------------------------
@lru_cache(maxsize=8)
def _angles(steps: int) -> np.ndarray:
    return np.arange(steps) * (2 * math.pi / steps)


def _outline(
    rng: random.Random,
    shape: str,
    *,
    centre: tuple[float, float],
    radii: tuple[float, float],
    rot: float,
    polygon: bool,
) -> tuple[str, dict, tuple[float, float]]:
    """Region shape, platform geometry, and the outline's (long, short) extent along its axes, pixels."""
    (cx, cy), (rx, ry) = centre, radii
    if not polygon:
        geometry = {
            "center": [round(cx, 1), round(cy, 1)],
            "radii": [round(rx, 1), round(ry, 1)],
            "rotation": round(rot, 1),
        }
        return "ellipse", geometry, (2 * max(rx, ry), 2 * min(rx, ry))
    steps = 40 if shape in ("irregular", "lobulated") else 28
    angles = _angles(steps)
    if shape == "lobulated":
        radial = 1 + 0.13 * np.cos(rng.randint(3, 5) * angles + rng.uniform(0, 2 * math.pi))
    else:
        # Irregular: a few low harmonics plus rough high ones; hand-drawn ovals only wobble a little.
        top, scale = (13, 0.11) if shape == "irregular" else (6, 0.02)
        harmonics = np.arange(2, top)[:, None]
        amplitude = np.array([rng.random() * scale / (1 + k / 4) for k in range(2, top)])[:, None]
        phase = np.array([rng.random() * 2 * math.pi for _ in range(2, top)])[:, None]
        radial = 1 + (amplitude * np.cos(harmonics * angles + phase)).sum(axis=0)
    cos_r, sin_r = math.cos(math.radians(rot)), math.sin(math.radians(rot))
    px, py = rx * radial * np.cos(angles), ry * radial * np.sin(angles)
    points = np.empty((len(angles), 2))
    points[:, 0] = cx + px * cos_r - py * sin_r
    points[:, 1] = cy + px * sin_r + py * cos_r
    # Extents along the drawing axes are those of the unrotated outline.
    along, across = float(px.max() - px.min()), float(py.max() - py.min())
    return "polygon", {"points": np.round(points, 1).tolist()}, (max(along, across), min(along, across))


# --- lesion archetypes ---------------------------------------------------------------------------------
def _breast_lesion(rng: random.Random) -> tuple[str, dict, float]:
    """(label, attributes, long axis mm) of a breast lesion drawn from a realistic mix of archetypes."""
    kind = weighted(
        rng, ("cyst", "complicated", "fibroadenoma", "suspicious", "complex", "hyper"), (24, 6, 28, 30, 7, 5)
    )
    base = {"organ_level": "breast", "body_system_level": body_system("breast")}
    if kind in ("cyst", "complicated"):
        attrs = {
            "diagnosis": "cyst",
            "shape": rng.choice(("oval", "oval", "round")),
            "margins": "well_defined",
            "echogenicity": "anechoic",
            "posterior_acoustics": "enhancement",
            "vascularity": "no_vascularity",
        }
        if kind == "complicated":
            attrs["internal_characteristics"] = ["septations"]
        return "cyst", base | attrs, rng.uniform(4, 20)
    if kind in ("fibroadenoma", "hyper"):
        attrs = {
            "diagnosis": "nodule",
            "shape": rng.choice(("oval", "oval", "lobulated", "round")),
            "margins": "well_defined",
            "echogenicity": "hyperechoic"
            if kind == "hyper"
            else rng.choice(("hypoechoic", "hypoechoic", "isoechoic")),
            "vascularity": rng.choice(("no_vascularity", "normal_regular_vascularity")),
        }
        if rng.random() < 0.3 and kind != "hyper":
            attrs["posterior_acoustics"] = "enhancement"
        return "nodule", base | attrs, rng.uniform(6, 25)
    if kind == "complex":
        attrs = {
            "diagnosis": "mass",
            "shape": rng.choice(("oval", "irregular")),
            "margins": rng.choice(("well_defined", "ill_defined_indistinct")),
            "echogenicity": "mixed_echogenicity",
            "internal_characteristics": ["complex_cystic_solid"],
            "posterior_acoustics": "enhancement",
            "vascularity": rng.choice(("normal_regular_vascularity", "increased_vascularity")),
        }
        return "mass", base | attrs, rng.uniform(10, 30)
    attrs = {
        "diagnosis": rng.choice(("mass", "nodule")),
        "shape": rng.choice(("irregular", "irregular", "irregular", "round", "lobulated")),
        "margins": "ill_defined_indistinct" if rng.random() < 0.85 else "well_defined",
        "echogenicity": "hypoechoic" if rng.random() < 0.9 else "mixed_echogenicity",
        "vascularity": rng.choice(
            ("increased_vascularity", "increased_vascularity", "no_vascularity", "normal_regular_vascularity")
        ),
    }
    if rng.random() < 0.6:
        attrs["posterior_acoustics"] = "shadowing"
    if rng.random() < 0.45:
        attrs["internal_characteristics"] = ["calcifications"]
    return attrs["diagnosis"], base | attrs, rng.uniform(6, 30)


def _thyroid_lesion(rng: random.Random) -> tuple[str, dict, float, dict]:
    """(label, attributes, long axis mm, TI-RADS features) of a thyroid nodule or cyst."""
    base = {"organ_level": "thyroid_gland", "body_system_level": body_system("thyroid_gland")}
    composition = weighted(
        rng,
        ("cystic_or_almost_completely_cystic", "mixed_cystic_and_solid", "solid_or_almost_completely_solid"),
        (15, 25, 60),
    )
    if composition == "cystic_or_almost_completely_cystic":
        attrs = {
            "diagnosis": "cyst",
            "shape": rng.choice(("oval", "round")),
            "margins": "well_defined",
            "echogenicity": "anechoic",
            "internal_characteristics": [COMPOSITION_INTERNAL[composition]],
            "posterior_acoustics": "enhancement",
            "vascularity": "no_vascularity",
        }
        features = {
            "composition": composition,
            "echogenicity": "anechoic",
            "shape": "wider_than_tall",
            "margin": "smooth",
            "echogenic_foci": ["none_or_large_comet_tail_artifacts"],
        }
        return "cyst", base | attrs, rng.uniform(5, 25), features
    echo = weighted(rng, ("hypoechoic", "isoechoic", "hyperechoic"), (55, 35, 10))
    internal = [COMPOSITION_INTERNAL[composition]]
    if composition == "mixed_cystic_and_solid":
        udaf_echo = rng.choice((echo, "mixed_echogenicity")) if echo != "hypoechoic" else echo
    else:
        udaf_echo = echo
    shape = weighted(rng, ("oval", "round", "lobulated", "irregular"), (45, 15, 15, 25))
    margins = rng.choice(("well_defined", "well_defined", "ill_defined_indistinct"))
    taller = echo == "hypoechoic" and composition == "solid_or_almost_completely_solid" and rng.random() < 0.25
    foci = weighted(
        rng,
        (
            "none_or_large_comet_tail_artifacts",
            "macrocalcifications",
            "peripheral_rim_calcifications",
            "punctate_echogenic_foci",
        ),
        (55, 15, 5, 25),
    )
    if foci != "none_or_large_comet_tail_artifacts":
        internal = [*internal, "calcifications"]
    attrs = {
        "diagnosis": "nodule",
        "shape": shape,
        "margins": margins,
        "echogenicity": udaf_echo,
        "internal_characteristics": internal,
        "vascularity": rng.choice(("no_vascularity", "normal_regular_vascularity", "increased_vascularity")),
    }
    if composition == "mixed_cystic_and_solid" and rng.random() < 0.5:
        attrs["posterior_acoustics"] = "enhancement"
    elif foci == "macrocalcifications" and rng.random() < 0.6:
        attrs["posterior_acoustics"] = "shadowing"
    features = {
        "composition": composition,
        "echogenicity": "hypoechoic" if echo == "hypoechoic" else "hyperechoic_or_isoechoic",
        "shape": "taller_than_wide" if taller else "wider_than_tall",
        "margin": "lobulated_or_irregular"
        if shape in ("lobulated", "irregular")
        else ("ill_defined" if margins == "ill_defined_indistinct" else "smooth"),
        "echogenic_foci": [foci],
    }
    return "nodule", base | attrs, rng.uniform(5, 35), features


# --- entities ------------------------------------------------------------------------------------------
def lesion_entity(seed: int, body_part: str, entity_id: str) -> LesionEntity:
    """The lesion `entity_id` of body part `body_part` in the demo generated with `seed` (pure)."""
    rng = random.Random(f"{seed}:lesion:{body_part}:{entity_id}")
    laterality = rng.choice(("right", "left"))
    if body_part == "breast":
        label, attrs, long_mm = _breast_lesion(rng)
        assessment = {"system": "birads_us", "category": birads_category(attrs)}
        clock_hour = rng.randint(1, 12)
        clock = f"{clock_hour}:00"
        distance = rng.choice((1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0, 5.0, 6.0, 1.5, 2.5, 3.5))
        site: tuple[str, ...] = ()
        view_names = rng.choice((("radial", "antiradial"), ("transverse", "longitudinal")))
        taller = False
    else:
        label, attrs, long_mm, features = _thyroid_lesion(rng)
        assessment = tirads_assessment(features)
        clock, distance = None, None
        site = (rng.choice(("upper", "mid", "mid", "lower")),)
        view_names = ("transverse", "longitudinal")
        taller = features["shape"] == "taller_than_wide"
    width, height = rng.choice(IMAGE_SIZES)
    probe = "convex" if rng.random() < 0.35 else "linear"
    fov = field_of_view(width, height, probe)
    depth_px = height - BOTTOM_PX - TOP_PX
    # Long axis as the width of the first view; the AP depth and the orthogonal width follow from it.
    across = long_mm * (rng.uniform(1.15, 1.45) if taller else rng.uniform(0.55, 0.9))
    if attrs["shape"] == "round":
        across = long_mm * rng.uniform(0.85, 0.97)
    if taller:
        long_mm, across = across, long_mm  # horizontal < vertical: the AP axis is the long one
    ortho_mm = long_mm * rng.uniform(0.8, 1.2)
    widest = max(long_mm, across, ortho_mm) * 1.3
    spacing = max(rng.uniform(0.06, 0.105), widest / (0.42 * depth_px))
    if spacing > 0.12:
        shrink = 0.12 / spacing
        long_mm, across, ortho_mm, spacing = long_mm * shrink, across * shrink, ortho_mm * shrink, 0.12
    spacing = round(spacing, 4)
    polygon = attrs["shape"] in ("irregular", "lobulated") or rng.random() < 0.4
    views = []
    for slot, (view, horizontal_mm) in enumerate(zip(view_names, (long_mm, ortho_mm), strict=True)):
        if slot == 1 and rng.random() < 0.3:
            continue  # some lesions are only imaged in one plane; the planner may still drop the second
        rx, ry = horizontal_mm / spacing / 2, across / spacing / 2
        reach = max(rx, ry) * 1.35
        top = max(5.0 / spacing + reach, 0.2 * depth_px)
        bottom = max(top, 0.62 * depth_px - reach)
        depth = rng.uniform(top, bottom)
        cx, cy = field_point(fov, rng.uniform(-0.3, 0.3), depth)
        rot = rng.uniform(-12, 12)
        shape, geometry, (long_px, short_px) = _outline(
            rng, attrs["shape"], centre=(cx, cy), radii=(rx, ry), rot=rot, polygon=polygon
        )
        marker = _body_marker(body_part, laterality, clock, distance, view=view, site=site)
        views.append(
            LesionView(
                view=view,
                width=width,
                height=height,
                spacing=spacing,
                probe=probe,
                shape=shape,
                geometry=geometry,
                size_mm=(round(long_px * spacing, 2), round(short_px * spacing, 2)),
                body_marker=marker,
                render_key=f"{body_part}:{entity_id}:{slot}",
            )
        )
    return LesionEntity(
        body_part=body_part,
        label=label,
        attributes=attrs,
        assessment=assessment,
        laterality=laterality,
        clock=clock,
        distance_cm=distance,
        site=site,
        views=tuple(views),
    )


def _body_marker(
    body_part: str,
    laterality: str,
    clock: str | None,
    distance: float | None,
    *,
    view: str,
    site: tuple[str, ...],
) -> str:
    """Burned-in annotation text, e.g. "RT BREAST 10:00 3CMFN RAD" or "LT THY LON MID"."""
    side = SIDE_ABBREV[laterality]
    if body_part == "breast":
        parts = [side, "BREAST"]
        if clock:
            parts.append(clock)
        if distance is not None:
            parts.append(f"{distance:g}CMFN")
        return " ".join([*parts, VIEW_ABBREV[view]])
    pole = {"upper": "UP", "mid": "MID", "lower": "LOW"}
    return " ".join([side, "THY", VIEW_ABBREV[view], *(pole[s] for s in site if s in pole)])


def survey_image(seed: int, body_part: str, survey_id: str, laterality: str) -> SurveyImage:
    """A lesion-free image of `body_part` on side `laterality` (pure)."""
    rng = random.Random(f"{seed}:survey:{body_part}:{survey_id}:{laterality}")
    width, height = rng.choice(IMAGE_SIZES)
    probe = "convex" if rng.random() < 0.35 else "linear"
    if body_part == "breast":
        view = rng.choice(("radial", "antiradial", "transverse", "longitudinal"))
        marker = _body_marker(body_part, laterality, f"{rng.randint(1, 12)}:00", None, view=view, site=())
    else:
        view = rng.choice(("transverse", "longitudinal"))
        marker = _body_marker(body_part, laterality, None, None, view=view, site=())
    return SurveyImage(
        width=width,
        height=height,
        spacing=round(rng.uniform(0.06, 0.1), 4),
        probe=probe,
        laterality=laterality,
        view=view,
        body_marker=marker,
        render_key=f"{body_part}:survey:{survey_id}:{laterality}",
    )


# Pooled entities recur across studies, so they are worth keeping; unique ones are not (they would only
# grow the heap the garbage collector walks).
pooled_lesion_entity = lru_cache(maxsize=16384)(lesion_entity)
pooled_survey_image = lru_cache(maxsize=16384)(survey_image)
