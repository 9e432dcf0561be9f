"""Pixels of a synthetic B-mode image: tissue layers, lesions, acoustic effects, speckle, burned-in text.

`image_render` depends only on the `ImageTruth` (whose content is fixed by its `render_key`) and the demo
seed, so images sharing a render key share identical pixels and one stored file. Vectorised numpy;
about 20–40 ms for 640×480 on one core.
"""

from __future__ import annotations

import hashlib
import io
import math
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from .scene import BOTTOM_PX, TOP_PX, field_of_view
from .truth import ImageTruth, LesionTruth

_ECHO_FACTOR = {
    "anechoic": 0.04,
    "hypoechoic": 0.32,
    "isoechoic": 0.78,
    "hyperechoic": 1.75,
    "mixed_echogenicity": 0.5,
}


def _generator(seed: int, render_key: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}:render:{render_key}".encode()).digest()
    return np.random.Generator(np.random.PCG64(int.from_bytes(digest[:16], "little")))


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cell: int) -> np.ndarray:
    """Low-frequency noise in about [0, 1] (bicubic upsampling of a coarse random grid)."""
    cell = max(2, cell)
    coarse = rng.random((height // cell + 3, width // cell + 3), dtype=np.float32)
    image = Image.fromarray(coarse, mode="F").resize((width + 3 * cell, height + 3 * cell), Image.BICUBIC)
    return np.asarray(image, dtype=np.float32)[cell : cell + height, cell : cell + width]


def _lesion_outline(lesion: LesionTruth) -> list[tuple[float, float]]:
    """The region's outline in pixels (an ellipse becomes a 64-gon)."""
    if lesion.shape == "polygon":
        return [(float(x), float(y)) for x, y in lesion.geometry["points"]]
    (cx, cy), (rx, ry) = lesion.geometry["center"], lesion.geometry["radii"]
    rot = math.radians(lesion.geometry["rotation"])
    points = []
    for i in range(64):
        a = 2 * math.pi * i / 64
        px, py = rx * math.cos(a), ry * math.sin(a)
        points.append(
            (cx + px * math.cos(rot) - py * math.sin(rot), cy + px * math.sin(rot) + py * math.cos(rot))
        )
    return points


def _coords(fov: dict, ys: np.ndarray, xs: np.ndarray, spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """(depth below the skin line, lateral position) in mm of pixels (ys, xs); broadcasts like numpy."""
    if fov["probe"] == "linear":
        depth = (ys - np.float32(fov["y0"])) * np.float32(spacing) + 0 * xs
        lateral = (xs - np.float32((fov["x0"] + fov["x1"]) / 2)) * np.float32(spacing) + 0 * ys
        return depth, lateral
    dx, dy = xs - np.float32(fov["cx"]), ys - np.float32(fov["cy"])
    depth = (np.hypot(dx, dy) - np.float32(fov["r0"])) * np.float32(spacing)
    lateral = np.arctan2(dx, dy) * np.float32(fov["r0"] * spacing)
    return depth, lateral


class _Boundaries:
    """Gently undulating layer boundaries (mm) as functions of lateral position, via a lookup table."""

    def __init__(self, rng: np.random.Generator, lateral: np.ndarray) -> None:
        self.rng = rng
        low, high = float(lateral.min()) - 1.0, float(lateral.max()) + 1.0
        self.positions = np.linspace(low, high, 512, dtype=np.float32)
        self.index = ((lateral - low) * np.float32(511 / (high - low))).astype(np.intp)

    def __call__(self, base: float, amplitude: float) -> np.ndarray:
        phases, lengths = self.rng.uniform(0, 2 * math.pi, 3), self.rng.uniform(22, 70, 3)
        weights = (1.0, 0.6, 0.3)
        table = base + amplitude * sum(
            w * np.sin(self.positions / n * 2 * math.pi + p)
            for w, n, p in zip(weights, lengths, phases, strict=True)
        )
        return table.astype(np.float32)[self.index]


def _breast_tissue(
    rng: np.random.Generator,
    depth: np.ndarray,
    lateral: np.ndarray,
    lesions: list[dict],
    *,
    noise: np.ndarray,
    fine: np.ndarray,
) -> np.ndarray:
    """Mean echo level of breast layers: skin, fat and Cooper ligaments, gland, muscle, chest wall."""
    wavy = _Boundaries(rng, lateral)
    top = min([les["top_mm"] for les in lesions], default=99.0)
    bottom = max([les["bottom_mm"] for les in lesions], default=0.0)
    fat_base = float(np.clip(rng.uniform(4.5, 9.0), 3.0, max(3.0, top - 1.5)))
    gland_base = max(rng.uniform(17, 27), bottom + 3.5)
    fat_end = wavy(fat_base, 0.6)
    gland_end = wavy(gland_base, 1.2)
    muscle_start = gland_end + np.float32(rng.uniform(1.2, 2.5))
    muscle_end = muscle_start + np.float32(rng.uniform(5, 9))
    ligaments = np.exp(-(((noise - 0.5) / 0.03) ** 2))
    tissue = 0.3 + 0.1 * fine + 0.45 * ligaments
    gland = (depth >= fat_end) & (depth < gland_end)
    tissue = np.where(gland, 0.52 + 0.3 * fine - 0.22 * (noise > 0.74) + 0.25 * ligaments, tissue)
    muscle = (depth >= muscle_start) & (depth < muscle_end)
    striation = np.abs(np.sin((depth - 0.06 * lateral) * np.float32(2 * math.pi / 1.4)))
    tissue = np.where(muscle, 0.26 + 0.35 * striation**8, tissue)
    tissue = np.where(depth >= muscle_end, 0.17 + 0.12 * fine, tissue)
    pleura = wavy(float(muscle_end.mean()) + 4.5, 0.5)  # flatter than the layers above it
    tissue += 0.9 * np.exp(-(((depth - pleura) / 0.35) ** 2))  # pleural line
    tissue = np.where(depth < 1.8, 0.75 + 0.45 * np.exp(-(((depth - 0.35) / 0.3) ** 2)), tissue)
    return tissue.astype(np.float32)


def _thyroid_tissue(
    rng: np.random.Generator,
    depth: np.ndarray,
    lateral: np.ndarray,
    lesions: list[dict],
    *,
    fine: np.ndarray,
    view: str,
    laterality: str,
    width_mm: float,
) -> np.ndarray:
    """Mean echo level of the neck: skin, fat, strap muscles, the thyroid lobe, trachea and carotid."""
    wavy = _Boundaries(rng, lateral)
    tissue = 0.24 + 0.08 * fine
    strap_end = wavy(rng.uniform(6.5, 8.5), 0.4)
    strap = (depth >= 2.5) & (depth < strap_end)
    striation = np.abs(np.sin((depth + 0.05 * lateral) * np.float32(2 * math.pi / 1.4)))
    tissue = np.where(strap, 0.22 + 0.3 * striation**8, tissue)
    if lesions:
        centre_u = float(np.mean([les["u_mm"] for les in lesions]))
        half_u = max(max(les["half_u_mm"] for les in lesions) + 6.0, 11.0)
        half_v = max(max((les["bottom_mm"] - les["top_mm"]) / 2 for les in lesions) + 4.0, 7.5)
        centre_v = float(np.mean([(les["top_mm"] + les["bottom_mm"]) / 2 for les in lesions]))
    else:
        centre_u, centre_v, half_u, half_v = rng.uniform(-3, 3), rng.uniform(15, 18), rng.uniform(11, 14), 7.5
    if view == "longitudinal":
        half_u = max(half_u, 0.42 * width_mm)
    lobe = np.sqrt(((lateral - centre_u) / half_u) ** 2 + ((depth - centre_v) / half_v) ** 2)
    tissue = np.where(lobe < 1.0, 0.62 + 0.16 * fine, tissue)
    tissue += 0.3 * np.exp(-(((lobe - 1.0) * np.float32(min(half_u, half_v) / 0.35)) ** 2))  # thin capsule
    if view == "transverse":
        medial = 1.0 if laterality == "right" else -1.0  # image right is the patient's left
        trachea_u, trachea_v = centre_u + medial * (half_u + 7.0), centre_v + 1.0
        offset = np.abs(lateral - trachea_u)
        arc = trachea_v - np.sqrt(np.clip(64.0 - offset**2, 0, None))  # anterior tracheal wall
        within = np.clip((8.0 - offset) / 1.2, 0, 1)
        tissue += 0.9 * np.exp(-(((depth - arc) / 0.45) ** 2)) * within  # cartilage/air interface
        air = within * (depth > arc + 0.6)
        reverberation = 0.5 + 0.5 * np.cos((depth - arc) * np.float32(2 * math.pi / 3.0))
        tissue = tissue * (1 - air) + air * (0.04 + 0.25 * reverberation**10 * np.exp(-(depth - arc) / 8.0))
        carotid_u = centre_u - medial * (half_u + 4.0)
        vessel = np.hypot(lateral - carotid_u, depth - centre_v)
        tissue = np.where(vessel < 3.6, 0.03, tissue)
        tissue += 0.5 * np.exp(-(((vessel - 3.8) / 0.3) ** 2))
        tissue = np.where(
            (np.abs(lateral - carotid_u) < 3.3) & (depth > centre_v + 3.8), tissue * 1.3, tissue
        )
    tissue = np.where(depth < 1.6, 0.7 + 0.45 * np.exp(-(((depth - 0.3) / 0.3) ** 2)), tissue)
    return tissue.astype(np.float32)


def _posterior_gain(item: dict, depth: np.ndarray, lateral: np.ndarray) -> np.ndarray:
    """Gain factor of a lesion's posterior shadowing (<1) or enhancement (>1) column along the beam."""
    posterior = item["lesion"].attributes.get("posterior_acoustics")
    if not posterior:
        return np.float32(1.0)
    centre_u = (item["u_min"] + item["u_max"]) / 2
    half = (item["u_max"] - item["u_min"]) / 2 * (0.75 if posterior == "shadowing" else 0.9)
    across = np.clip((half - np.abs(lateral - centre_u)) / max(0.8, 0.35 * half), 0, 1)
    centre_v = (item["top_mm"] + item["bottom_mm"]) / 2
    along = np.clip((depth - centre_v) / max(0.5, item["bottom_mm"] - centre_v), 0, 1)
    factor = 0.2 if posterior == "shadowing" else 1.75
    fade = np.exp(-np.clip(depth - item["bottom_mm"], 0, None) / np.float32(60.0))
    gain = 1 + (factor - 1) * across * along * fade
    if posterior == "enhancement" and item["lesion"].attributes.get("margins") == "well_defined":
        edges = np.exp(-(((np.abs(lateral - centre_u) - (item["u_max"] - item["u_min"]) / 2) / 0.35) ** 2))
        gain *= 1 - 0.5 * edges * (depth > centre_v)  # thin refraction shadows at the lateral edges
    return gain


def _field_mask(fov: dict, width: int, height: int) -> np.ndarray:
    mask = Image.new("1", (width, height), 0)
    draw = ImageDraw.Draw(mask)
    if fov["probe"] == "linear":
        draw.rectangle((fov["x0"], fov["y0"], fov["x1"], fov["y1"]), fill=1)
    else:
        cx, cy, r0, r1 = fov["cx"], fov["cy"], fov["r0"], fov["r1"]
        half = math.degrees(fov["half_angle"])
        draw.pieslice((cx - r1, cy - r1, cx + r1, cy + r1), 90 - half, 90 + half, fill=1)
        draw.ellipse((cx - r0, cy - r0, cx + r0, cy + r0), fill=0)
    return np.asarray(mask)


def _upsample(values: np.ndarray, width: int, height: int) -> np.ndarray:
    return np.asarray(
        Image.fromarray(values.astype(np.float32), mode="F").resize((width, height), Image.BILINEAR)
    )


def image_render(image: ImageTruth, *, seed: int) -> Image.Image:
    """Render `image` as an 8-bit grayscale ("L") B-mode-like picture.

    Promises: deterministic in (`image` content, `seed`); every region of `image.lesions` covers the
    pixels drawn for that lesion, with the echogenicity, margin, posterior acoustics and calcifications
    its attributes say; the body marker and a depth scale are burned in below/beside the field.
    """
    rng = _generator(seed, image.render_key)
    width, height, spacing = image.width, image.height, image.pixel_spacing_mm
    fov = field_of_view(width, height, image.probe)

    # Lesion footprints first: the anatomy arranges itself around them.
    shapes = []
    for lesion in image.lesions:
        outline = np.asarray(_lesion_outline(lesion), dtype=np.float32)
        depth_pts, lateral_pts = _coords(fov, outline[:, 1], outline[:, 0], spacing)
        shapes.append(
            {
                "lesion": lesion,
                "outline": outline,
                "top_mm": float(depth_pts.min()),
                "bottom_mm": float(depth_pts.max()),
                "u_mm": float(lateral_pts.mean()),
                "u_min": float(lateral_pts.min()),
                "u_max": float(lateral_pts.max()),
                "half_u_mm": float(lateral_pts.max() - lateral_pts.min()) / 2,
            }
        )

    # Smooth maps (anatomy, acoustic gain) at half resolution, then upsampled.
    h2, w2 = (height + 1) // 2, (width + 1) // 2
    ys = (np.arange(h2, dtype=np.float32) * 2 + 0.5)[:, None]
    xs = (np.arange(w2, dtype=np.float32) * 2 + 0.5)[None, :]
    depth, lateral = _coords(fov, ys, xs, spacing)
    noise = _smooth_noise(rng, h2, w2, int(2.0 / spacing))
    fine = _smooth_noise(rng, h2, w2, int(0.6 / spacing))
    if image.body_part == "thyroid":
        tissue = _thyroid_tissue(
            rng,
            depth,
            lateral,
            shapes,
            fine=fine,
            view=image.view,
            laterality=image.laterality,
            width_mm=(fov.get("x1", width) - fov.get("x0", 0)) * spacing,
        )
    else:
        tissue = _breast_tissue(rng, depth, lateral, shapes, noise=noise, fine=fine)
    gain = np.exp(np.float32(-0.016) * depth) * (1.0 + 0.2 * np.exp(-depth / np.float32(3.0)))
    for item in shapes:
        gain = gain * _posterior_gain(item, depth, lateral)
    tissue_full = _upsample(tissue, width, height).copy()
    gain_full = _upsample(gain, width, height).copy()

    for item in shapes:
        _draw_lesion(rng, item, tissue_full, gain_full, spacing=spacing)

    # Speckle: low-passed complex Gaussian noise; the square root of its magnitude (Rayleigh) keeps the
    # grain visible without drowning the tissue contrast, like log compression on a scanner.
    field = rng.standard_normal((2, height, width), dtype=np.float32)
    ndimage.gaussian_filter(field[0], (0.9, 1.9), output=field[0], truncate=2.5)
    ndimage.gaussian_filter(field[1], (0.9, 1.9), output=field[1], truncate=2.5)
    speckle = np.sqrt(np.hypot(field[0], field[1]))
    speckle *= np.float32(1.0 / float(speckle.mean()))
    signal = tissue_full * gain_full * speckle
    signal *= np.float32(255.0 / 1.25 * rng.uniform(0.95, 1.08))
    np.clip(signal, 0.0, 255.0, out=signal)
    pixels = signal.astype(np.uint8)
    pixels[~_field_mask(fov, width, height)] = 0
    picture = Image.fromarray(pixels, mode="L")
    _overlay(picture, image, fov, rng)
    return picture


def _draw_lesion(
    rng: np.random.Generator, item: dict, tissue: np.ndarray, gain: np.ndarray, *, spacing: float
) -> None:
    """Blend one lesion into the full-resolution tissue map (in place); calcifications shadow `gain`."""
    lesion: LesionTruth = item["lesion"]
    attrs = lesion.attributes
    outline = item["outline"]
    pad = 14
    height, width = tissue.shape
    x0, y0 = max(0, int(outline[:, 0].min()) - pad), max(0, int(outline[:, 1].min()) - pad)
    x1, y1 = min(width, int(outline[:, 0].max()) + pad + 1), min(height, int(outline[:, 1].max()) + pad + 1)
    if x1 <= x0 or y1 <= y0:
        return
    crop = (slice(y0, y1), slice(x0, x1))
    mask_image = Image.new("L", (x1 - x0, y1 - y0), 0)
    ImageDraw.Draw(mask_image).polygon([(x - x0, y - y0) for x, y in outline.tolist()], fill=255)
    mask = np.asarray(mask_image, dtype=np.float32) / 255.0
    hit = mask > 0.5
    if not hit.any():
        return
    region = tissue[crop]
    local = max(float(region[hit].mean()), 0.45)
    ill_defined = attrs.get("margins") == "ill_defined_indistinct"
    soft = ndimage.gaussian_filter(mask, 0.55 / spacing if ill_defined else 0.7)
    fine = _smooth_noise(rng, y1 - y0, x1 - x0, int(0.8 / spacing))
    echo = attrs.get("echogenicity", "hypoechoic")
    if echo == "anechoic":
        level = np.full(soft.shape, 0.035, dtype=np.float32)
    elif echo == "mixed_echogenicity":
        pockets = np.clip((_smooth_noise(rng, y1 - y0, x1 - x0, int(2.2 / spacing)) - 0.5) / 0.08, 0, 1)
        level = (0.8 * local * (1 - pockets) + 0.05 * pockets).astype(np.float32)
    else:
        level = _ECHO_FACTOR[echo] * local * (0.85 + 0.3 * fine)
    blended = region * (1 - soft) + level * soft
    if echo == "isoechoic":  # a thin hypoechoic halo, as isoechoic nodules usually show
        halo = np.clip(soft * (1 - soft) * 4, 0, 1)
        blended *= 1 - 0.45 * halo
    if not ill_defined:  # a thin echogenic pseudo-capsule makes circumscribed (and isoechoic) lesions visible
        rim = np.clip(soft * (1 - soft) * 4, 0, 1) ** 2
        blended += 0.2 * rim * (0.5 if echo == "anechoic" else 1.0)
    elif attrs.get("shape") == "irregular" and echo != "anechoic":  # spicules: dark rays from the edge
        ys, xs = np.nonzero(hit)
        yy, xx = np.mgrid[0 : soft.shape[0], 0 : soft.shape[1]]
        ray_angle = np.arctan2(yy - ys.mean(), xx - xs.mean())
        band = (soft > 0.03) & (soft < 0.6)
        for angle in rng.uniform(0, 2 * math.pi, int(rng.integers(6, 12))):
            offset = np.angle(np.exp(1j * (ray_angle - angle)))
            blended *= 1 - 0.5 * np.exp(-((offset / 0.06) ** 2)) * band
    tissue[crop] = blended

    internal = attrs.get("internal_characteristics", [])
    inside_points = np.column_stack(np.nonzero(hit))
    if "septations" in internal:
        septa = Image.new("L", (x1 - x0, y1 - y0), 0)
        draw = ImageDraw.Draw(septa)
        for _ in range(int(rng.integers(1, 4))):
            a, b = inside_points[rng.integers(0, len(inside_points), 2)]
            draw.line([(int(a[1]), int(a[0])), (int(b[1]), int(b[0]))], fill=255, width=2)
        tissue[crop] += 0.6 * (np.asarray(septa, dtype=np.float32) / 255.0) * mask
    if "calcifications" in internal:
        foci = lesion.assessment.get("features", {}).get("echogenic_foci", ["punctate_echogenic_foci"])
        macro = "macrocalcifications" in foci
        count = int(rng.integers(1, 3)) if macro else int(rng.integers(4, 14))
        radius = max(1.0, (rng.uniform(0.8, 1.4) if macro else 0.2) / spacing)
        dots = np.zeros(soft.shape, dtype=np.float32)
        for y, x in inside_points[rng.integers(0, len(inside_points), count)]:
            yy, xx = np.ogrid[-y : soft.shape[0] - y, -x : soft.shape[1] - x]
            dots = np.maximum(dots, np.exp(-(yy**2 + xx**2) / (2 * radius**2)).astype(np.float32))
        tissue[crop] += 1.4 * dots
        if macro:  # a large calcification casts its own shadow
            columns = dots.max(axis=0) > 0.5
            start = y0 + int(np.argmax(dots.max(axis=1) > 0.5)) + int(radius)
            gain[start:, x0:x1][:, columns] *= 0.35


def _overlay(picture: Image.Image, image: ImageTruth, fov: dict, rng: np.random.Generator) -> None:
    """Burn in the header, the body marker and a depth scale in centimetres."""
    draw = ImageDraw.Draw(picture)
    small, marker = _font(12), _font(16)
    probe = "L12-5" if image.probe == "linear" else "C9-2"
    freq = 12 if image.probe == "linear" else 7
    depth_cm = (picture.height - BOTTOM_PX - TOP_PX) * image.pixel_spacing_mm / 10
    draw.text((10, 8), f"SONOALIGN SYN   {probe}  {freq}MHz", fill=200, font=small)
    gain = int(rng.integers(42, 64))
    draw.text((picture.width - 150, 8), f"D {depth_cm:.1f}cm  G{gain}  FR28", fill=200, font=small)
    draw.text((12, picture.height - 28), image.body_marker, fill=235, font=marker)
    if image.body_part == "breast":  # pictogram: breast outline with the probe at the clock position
        cx, cy, r = picture.width - 44, picture.height - 30, 16
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=180)
        draw.ellipse((cx - 2, cy - 2, cx + 2, cy + 2), fill=180)
        hour = next((int(part.split(":")[0]) for part in image.body_marker.split() if ":" in part), 12)
        angle = math.radians(hour * 30)
        px, py = cx + 0.6 * r * math.sin(angle), cy - 0.6 * r * math.cos(angle)
        draw.line(
            (
                px - 6 * math.cos(angle),
                py - 6 * math.sin(angle),
                px + 6 * math.cos(angle),
                py + 6 * math.sin(angle),
            ),
            fill=255,
            width=3,
        )
    x = (fov["x1"] + 10) if fov["probe"] == "linear" else picture.width - 22
    top = TOP_PX
    step_px = 5.0 / image.pixel_spacing_mm
    ticks = int((picture.height - BOTTOM_PX - top) / step_px)
    for k in range(ticks + 1):
        y = top + k * step_px
        long_tick = k % 2 == 0
        draw.line((x, y, x + (7 if long_tick else 4), y), fill=190)
        if long_tick and k:
            draw.text((x + 9, y - 7), str(k // 2), fill=190, font=small)
    focus = top + rng.uniform(0.3, 0.6) * (picture.height - BOTTOM_PX - top)
    draw.polygon([(x - 2, focus), (x - 8, focus - 4), (x - 8, focus + 4)], fill=220)


def image_render_png(image: ImageTruth, *, seed: int) -> bytes:
    """PNG bytes of `image_render(image, seed=seed)`; identical bytes for identical input."""
    buffer = io.BytesIO()
    image_render(image, seed=seed).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
