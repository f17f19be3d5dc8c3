"""A film with its answer drawn on it: opacity boxes, the lung frame, attention (in memory only; PIL and cv2, so
the pages, the CLI and the tests draw the same picture)."""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont


def draw_boxes(rgb: np.ndarray, boxes, color=(255, 64, 64)) -> Image.Image:
    img = Image.fromarray(rgb).convert("RGB")
    draw = ImageDraw.Draw(img)
    width = max(2, round(max(img.size) / 300))
    try:
        font = ImageFont.load_default(size=max(12, round(max(img.size) / 45)))
    except TypeError:  # older Pillow
        font = ImageFont.load_default()
    for b in boxes:
        draw.rectangle(list(b.box), outline=color, width=width)
    for label, (tx, ty) in label_places(draw, boxes, font, width):
        draw.rectangle(draw.textbbox((tx, ty), label, font=font), fill=(0, 0, 0))
        draw.text((tx, ty), label, fill=color, font=font)
    return img


def label_places(draw: ImageDraw.ImageDraw, boxes, font, width: int) -> list[tuple[str, tuple[float, float]]]:
    """Where each box's score label goes: above its box, else just inside it, else nowhere (the box stays): labels
    never cover one another, however close the boxes of a small film lie."""
    placed, taken = [], []
    for b in sorted(boxes, key=lambda b: -b.score):  # the strongest boxes keep their labels
        x0, y0, _, _ = b.box
        label = f"opacity {b.score:.2f}"
        size = getattr(font, "size", 10)
        for tx, ty in ((x0 + width, max(0, y0 - size - 2 * width)), (x0 + width, y0 + width)):
            rect = draw.textbbox((tx, ty), label, font=font)
            if not any(_overlap(rect, r) for r in taken):
                placed.append((label, (tx, ty)))
                taken.append(rect)
                break
    return placed


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def draw_window(img: Image.Image, window: tuple[int, int, int, int], color=(80, 200, 255)) -> Image.Image:
    """A dashed frame: the part of the film the lung reader looked at."""
    img = img.copy()
    draw = ImageDraw.Draw(img)
    width = max(1, round(max(img.size) / 400))
    dash = max(6, round(max(img.size) / 60))
    x0, y0, x1, y1 = window
    for a, b, horizontal, fixed in ((x0, x1, True, y0), (x0, x1, True, y1), (y0, y1, False, x0), (y0, y1, False, x1)):
        for start in range(int(a), int(b), 2 * dash):
            end = min(int(b), start + dash)
            draw.line([(start, fixed), (end, fixed)] if horizontal else [(fixed, start), (fixed, end)],
                      fill=color, width=width)
    return img


DISPLAY_MAX_SIDE = 1280  # px: what a page shows; a 2,000 px film is drawn and sent at this size
DISPLAY_MIN_SIDE = 768  # px: a 256 px film is drawn at this size, so that its box labels fit between its boxes


def annotated_film(rgb: np.ndarray, boxes, window: tuple[int, int, int, int] | None,
                   heat: np.ndarray | None = None) -> Image.Image:
    """The film as the page shows it, DISPLAY_MIN_SIDE to DISPLAY_MAX_SIDE px: attention, opacity boxes, lung
    frame."""
    h, w = rgb.shape[:2]
    scale = min(1.0, DISPLAY_MAX_SIDE / max(h, w))
    if max(h, w) * scale < DISPLAY_MIN_SIDE:
        scale = DISPLAY_MIN_SIDE / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    shown = rgb if scale == 1.0 else cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if scale < 1 else
                                                cv2.INTER_CUBIC)
    if heat is not None:
        shown = overlay_heatmap(shown, cv2.resize(heat, size, interpolation=cv2.INTER_LINEAR))
    picture = draw_boxes(shown, [_scaled_box(b, scale) for b in boxes])
    if window is not None:
        picture = draw_window(picture, tuple(round(v * scale) for v in window))
    return picture


def _scaled_box(box, scale: float):
    from dataclasses import replace
    return replace(box, box=tuple(v * scale for v in box.box))


def overlay_heatmap(rgb: np.ndarray, heat: np.ndarray, alpha: float = 0.4) -> np.ndarray:
    colored = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
    return (rgb * (1 - alpha) + colored * alpha).astype(np.uint8)


def png_bytes(img: Image.Image | np.ndarray) -> bytes:
    if isinstance(img, np.ndarray):
        img = Image.fromarray(img)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
