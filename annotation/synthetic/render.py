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

_ECHO_FACTOR = {"anechoic": 0.04, "hypoechoic": 0.32, "isoechoic": 0.82, "hyperechoic": 1.75,
                "mixed_echogenicity": 0.5}


def _generator(seed: int, render_key: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}:render:{render_key}".encode()).digest()
    return np.random.Generator(np.random.PCG64(int.from_bytes(digest[:16], "little")))


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cell: int) -> np.ndarray:
    """Low-frequency noise in [0, 1] (bicubic upsampling of a coarse random grid)."""
    coarse = rng.random((height // cell + 3, width // cell + 3), dtype=np.float32)
    image = Image.fromarray(coarse, mode="F").resize((width + 3 * cell, height + 3 * cell), Image.BICUBIC)
    return np.asarray(image, dtype=np.float32)[cell:cell + height, cell:cell + width]


def _wavy(rng: np.random.Generator, lateral_mm: np.ndarray, base: float, amplitude: float) -> np.ndarray:
    """A gently undulating boundary depth (mm) as a function of lateral position."""
    phase = rng.uniform(0, 2 * math.pi, 2)
    length = rng.uniform(18, 40, 2)
    return base + amplitude * (np.sin(lateral_mm / length[0] * 2 * math.pi + phase[0])
                               + 0.5 * np.sin(lateral_mm / length[1] * 2 * math.pi + phase[1]))


def _lesion_outline(lesion: LesionTruth) -> list[tuple[float, float]]:
    if lesion.shape == "polygon":
        return [(float(x), float(y)) for x, y in lesion.geometry["points"]]
    (cx, cy), (rx, ry) = lesion.geometry["center"], lesion.geometry["radii"]
    rot = math.radians(lesion.geometry["rotation"])
    points = []
    for i in range(64):
        a = 2 * math.pi * i / 64
        px, py = rx * math.cos(a), ry * math.sin(a)
        points.append((cx + px * math.cos(rot) - py * math.sin(rot), cy + px * math.sin(rot) + py * math.cos(rot)))
    return points


def _breast_tissue(rng: np.random.Generator, depth: np.ndarray, lateral: np.ndarray, lesions: list[dict],
                   noise: np.ndarray, fine: np.ndarray) -> np.ndarray:
    """Mean echo level of breast layers: skin, fat with Cooper ligaments, fibroglandular, muscle, chest wall."""
    top = min([les["top_mm"] for les in lesions], default=99.0)
    bottom = max([les["bottom_mm"] for les in lesions], default=0.0)
    fat_base = float(np.clip(rng.uniform(4.5, 9.0), 3.0, max(3.0, top - 1.0)))
    gland_base = max(rng.uniform(18, 28), bottom + 3.0)
    fat_end = _wavy(rng, lateral, fat_base, 0.9)
    gland_end = _wavy(rng, lateral, gland_base, 1.6)
    muscle_end = gland_end + 2.0 + rng.uniform(5, 9)
    ligaments = np.exp(-((noise - 0.5) / 0.035) ** 2)
    tissue = np.full(depth.shape, 0.22, dtype=np.float32)
    tissue += 0.5 * ligaments * (depth < fat_end)
    gland = (depth >= fat_end) & (depth < gland_end)
    tissue = np.where(gland, 0.5 + 0.35 * fine - 0.25 * (noise > 0.72), tissue)
    muscle = (depth >= gland_end + 2.0) & (depth < muscle_end)
    striation = np.abs(np.sin((depth - 0.08 * lateral) * 2 * math.pi / 1.3))
    tissue = np.where(muscle, 0.28 + 0.3 * striation ** 6, tissue)
    deep = depth >= muscle_end
    tissue = np.where(deep, 0.16 + 0.1 * fine, tissue)
    pleura = np.exp(-((depth - muscle_end - 6.0) / 0.5) ** 2)
    tissue += 0.8 * pleura
    skin = depth < 1.8
    tissue = np.where(skin, 0.75 + 0.4 * np.exp(-((depth - 0.3) / 0.35) ** 2), tissue)
    return tissue.astype(np.float32)


def _thyroid_tissue(rng: np.random.Generator, depth: np.ndarray, lateral: np.ndarray, lesions: list[dict],
                    fine: np.ndarray, view: str, laterality: str, width_mm: float) -> np.ndarray:
    """Mean echo level of the neck: skin, fat, strap muscles, the thyroid lobe, trachea and carotid."""
    tissue = np.full(depth.shape, 0.26, dtype=np.float32)
    strap_end = _wavy(rng, lateral, rng.uniform(6.5, 8.5), 0.4)
    strap = (depth >= 2.5) & (depth < strap_end)
    striation = np.abs(np.sin((depth + 0.05 * lateral) * 2 * math.pi / 1.4))
    tissue = np.where(strap, 0.24 + 0.22 * striation ** 6, tissue)
    if lesions:
        centre_u = float(np.mean([les["u_mm"] for les in lesions]))
        centre_v = float(np.mean([(les["top_mm"] + les["bottom_mm"]) / 2 for les in lesions]))
        half_u = max(max(les["half_u_mm"] for les in lesions) + 4.0, 10.0)
        half_v = max(max((les["bottom_mm"] - les["top_mm"]) / 2 for les in lesions) + 3.5, 7.0)
        centre_v = max(centre_v, strap_end.mean() + half_v - 0.5 * half_v)
    else:
        centre_u, centre_v, half_u, half_v = rng.uniform(-3, 3), rng.uniform(15, 18), rng.uniform(11, 14), 7.5
    if view == "longitudinal":
        half_u = max(half_u, 0.42 * width_mm)
    lobe = ((lateral - centre_u) / half_u) ** 2 + ((depth - centre_v) / half_v) ** 2
    tissue = np.where(lobe < 1.0, 0.62 + 0.12 * fine, tissue)
    tissue += 0.35 * np.exp(-((np.sqrt(lobe) - 1.0) / 0.03) ** 2)  # thin capsule
    if view == "transverse":
        medial = 1.0 if laterality == "right" else -1.0  # image right is the patient's left
        trachea_u = centre_u + medial * (half_u + 6.0)
        ring = np.hypot(lateral - trachea_u, depth - (centre_v - 1.0))
        tissue += 0.9 * np.exp(-((ring - 8.0) / 0.4) ** 2) * (depth < centre_v - 1.0)
        tissue = np.where((np.abs(lateral - trachea_u) < 7.5) & (depth > centre_v + 1.0), 0.06, tissue)
        carotid_u = centre_u - medial * (half_u + 3.5)
        vessel = np.hypot(lateral - carotid_u, depth - centre_v)
        tissue = np.where(vessel < 3.6, 0.03, tissue)
        tissue += 0.5 * np.exp(-((vessel - 3.8) / 0.3) ** 2)
        below = (np.abs(lateral - carotid_u) < 3.3) & (depth > centre_v + 3.8)
        tissue = np.where(below, tissue * 1.3, tissue)
    skin = depth < 1.6
    tissue = np.where(skin, 0.7 + 0.4 * np.exp(-((depth - 0.3) / 0.35) ** 2), tissue)
    return tissue.astype(np.float32)


def image_render(image: ImageTruth, *, seed: int) -> Image.Image:
    """Render `image` as an 8-bit grayscale ("L") B-mode-like picture.

    Promises: deterministic in (`image` content, `seed`); every region of `image.lesions` covers the
    pixels drawn for that lesion, with the echogenicity, margin, posterior acoustics and calcifications
    its attributes say; the body marker and a depth scale are burned in below/beside the field.
    """
    rng = _generator(seed, image.render_key)
    width, height, spacing = image.width, image.height, image.pixel_spacing_mm
    fov = field_of_view(width, height, image.probe)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    if fov["probe"] == "linear":
        depth_px = yy - fov["y0"]
        lateral_px = xx - (fov["x0"] + fov["x1"]) / 2
        inside = (xx >= fov["x0"]) & (xx <= fov["x1"]) & (yy >= fov["y0"]) & (yy <= fov["y1"])
    else:
        dx, dy = xx - fov["cx"], yy - fov["cy"]
        radius = np.hypot(dx, dy)
        theta = np.arctan2(dx, dy)
        depth_px = radius - fov["r0"]
        lateral_px = theta * fov["r0"]
        inside = (radius >= fov["r0"]) & (radius <= fov["r1"]) & (np.abs(theta) <= fov["half_angle"])
    depth, lateral = depth_px * spacing, lateral_px * spacing

    # Lesion footprints first: the anatomy arranges itself around them.
    shapes = []
    for lesion in image.lesions:
        outline = _lesion_outline(lesion)
        mask_image = Image.new("L", (width, height), 0)
        ImageDraw.Draw(mask_image).polygon(outline, fill=255)
        mask = np.asarray(mask_image, dtype=np.float32) / 255.0
        hit = mask > 0.5
        if not hit.any():
            continue
        shapes.append({"lesion": lesion, "outline": outline, "mask": mask, "hit": hit,
                       "top_mm": float(depth[hit].min()), "bottom_mm": float(depth[hit].max()),
                       "u_mm": float(lateral[hit].mean()),
                       "half_u_mm": float(lateral[hit].max() - lateral[hit].min()) / 2,
                       "u_min": float(lateral[hit].min()), "u_max": float(lateral[hit].max())})
    noise = _smooth_noise(rng, height, width, max(8, int(4.0 / spacing)))
    fine = _smooth_noise(rng, height, width, max(4, int(1.2 / spacing)))
    if image.body_part == "thyroid":
        tissue = _thyroid_tissue(rng, depth, lateral, shapes, fine, image.view, image.laterality,
                                 (fov.get("x1", width) - fov.get("x0", 0)) * spacing)
    else:
        tissue = _breast_tissue(rng, depth, lateral, shapes, noise, fine)

    gain = np.ones_like(tissue)
    for item in shapes:
        tissue, gain = _draw_lesion(rng, item, tissue, gain, depth, lateral, spacing, fine)
    tissue *= gain

    # Speckle: magnitude of low-passed complex Gaussian noise (Rayleigh, laterally elongated grains).
    field = rng.standard_normal((2, height, width), dtype=np.float32)
    ndimage.gaussian_filter(field[0], (0.7, 1.6), output=field[0], truncate=2.5)
    ndimage.gaussian_filter(field[1], (0.7, 1.6), output=field[1], truncate=2.5)
    speckle = np.hypot(field[0], field[1])
    speckle *= 1.0 / float(speckle.mean())
    attenuation = np.exp(-0.018 * depth) * (1.0 + 0.25 * np.exp(-depth / 3.0))
    signal = tissue * speckle * attenuation * rng.uniform(0.95, 1.1)
    pixels = np.clip(signal / 1.35, 0.0, 1.0) ** 0.75 * 255.0
    pixels[~inside] = 0.0
    picture = Image.fromarray(pixels.astype(np.uint8), mode="L")
    _overlay(picture, image, fov, rng)
    return picture


def _draw_lesion(rng: np.random.Generator, item: dict, tissue: np.ndarray, gain: np.ndarray, depth: np.ndarray,
                 lateral: np.ndarray, spacing: float, fine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Blend one lesion into the tissue map and its posterior acoustics into the gain map."""
    lesion: LesionTruth = item["lesion"]
    attrs = lesion.attributes
    mask, hit = item["mask"], item["hit"]
    ys, xs = np.nonzero(hit)
    pad = 12
    y0, y1 = max(0, ys.min() - pad), min(mask.shape[0], ys.max() + pad + 1)
    x0, x1 = max(0, xs.min() - pad), min(mask.shape[1], xs.max() + pad + 1)
    crop = (slice(y0, y1), slice(x0, x1))
    local = float(tissue[hit].mean())
    ill_defined = attrs.get("margins") == "ill_defined_indistinct"
    soft = ndimage.gaussian_filter(mask[crop], 2.2 if ill_defined else 0.7)
    echo = attrs.get("echogenicity", "hypoechoic")
    level = np.full(soft.shape, _ECHO_FACTOR[echo] * max(local, 0.45), dtype=np.float32)
    if echo == "anechoic":
        level[:] = 0.03
    elif echo == "mixed_echogenicity":
        pockets = fine[crop] > 0.55
        level = np.where(pockets, 0.04, 0.75 * max(local, 0.45)).astype(np.float32)
    else:
        level *= 0.85 + 0.3 * fine[crop]
    region = tissue[crop]
    blended = region * (1 - soft) + level * soft
    if not ill_defined:  # a thin echogenic pseudo-capsule makes circumscribed (and isoechoic) lesions visible
        rim = np.clip(soft * (1 - soft) * 4, 0, 1) ** 2
        blended += 0.22 * rim * (0.4 if echo == "anechoic" else 1.0)
    elif echo in ("hypoechoic", "isoechoic") and "shape" in attrs:  # spicules: dark rays from the edge
        angles = rng.uniform(0, 2 * math.pi, 10)
        cy, cx = ys.mean() - y0, xs.mean() - x0
        yy, xx = np.mgrid[0:soft.shape[0], 0:soft.shape[1]]
        ray_angle = np.arctan2(yy - cy, xx - cx)
        for angle in angles if attrs.get("shape") == "irregular" else ():
            ray = np.exp(-(np.angle(np.exp(1j * (ray_angle - angle))) / 0.05) ** 2) * (soft > 0.05) * (soft < 0.6)
            blended *= 1 - 0.45 * ray
    tissue[crop] = blended

    internal = attrs.get("internal_characteristics", [])
    inside_points = np.column_stack([ys, xs])
    if "septations" in internal:
        septa = Image.new("L", (x1 - x0, y1 - y0), 0)
        draw = ImageDraw.Draw(septa)
        for _ in range(int(rng.integers(1, 4))):
            a, b = inside_points[rng.integers(0, len(inside_points), 2)]
            draw.line([(a[1] - x0, a[0] - y0), (b[1] - x0, b[0] - y0)], fill=255, width=2)
        tissue[crop] += 0.7 * (np.asarray(septa, dtype=np.float32) / 255.0) * soft
    if "calcifications" in internal:
        foci = lesion.assessment.get("features", {}).get("echogenic_foci", ["punctate_echogenic_foci"])
        macro = "macrocalcifications" in foci
        count = int(rng.integers(1, 3)) if macro else int(rng.integers(4, 14))
        radius = (rng.uniform(0.8, 1.4) if macro else 0.22) / spacing
        dots = np.zeros(soft.shape, dtype=np.float32)
        for y, x in inside_points[rng.integers(0, len(inside_points), count)]:
            yy, xx = np.ogrid[y0 - y:y1 - y, x0 - x:x1 - x]
            dots = np.maximum(dots, np.exp(-(yy ** 2 + xx ** 2) / (2 * max(radius, 1.0) ** 2)))
        tissue[crop] += 1.4 * dots
        if macro:  # a large calcification casts its own shadow
            hit_cols = dots.max(axis=0) > 0.5
            gain[y0 + int(dots.argmax() // dots.shape[1]):, x0:x1][:, hit_cols] *= 0.35

    posterior = attrs.get("posterior_acoustics")
    if posterior:
        centre_u = (item["u_min"] + item["u_max"]) / 2
        half = (item["u_max"] - item["u_min"]) / 2 * (0.75 if posterior == "shadowing" else 0.9)
        across = np.clip((half - np.abs(lateral - centre_u)) / max(0.6, 0.15 * half), 0, 1)
        centre_v = (item["top_mm"] + item["bottom_mm"]) / 2
        along = np.clip((depth - centre_v) / max(0.5, item["bottom_mm"] - centre_v), 0, 1)
        strength = across * along * (1 - mask)
        factor = 0.22 if posterior == "shadowing" else 1.7
        gain *= 1 + (factor - 1) * strength
        if posterior == "enhancement" and not ill_defined:  # thin refraction shadows at the lateral edges
            edges = np.exp(-((np.abs(lateral - centre_u) - (item["u_max"] - item["u_min"]) / 2) / 0.35) ** 2)
            gain *= 1 - 0.5 * edges * (depth > centre_v)
    return tissue, gain


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
        draw.line((px - 6 * math.cos(angle), py - 6 * math.sin(angle), px + 6 * math.cos(angle),
                   py + 6 * math.sin(angle)), fill=255, width=3)
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
    image_render(image, seed=seed).save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()
