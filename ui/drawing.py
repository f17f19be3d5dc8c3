"""Pictures for the pages: boxes and attention drawn over an image (in memory only)."""

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
        x0, y0, x1, y1 = b.box
        draw.rectangle([x0, y0, x1, y1], outline=color, width=width)
        label = f"opacity {b.score:.2f}"
        tx, ty = x0 + width, max(0, y0 - font.size - 2 * width) if hasattr(font, "size") else y0
        draw.rectangle(draw.textbbox((tx, ty), label, font=font), fill=(0, 0, 0))
        draw.text((tx, ty), label, fill=color, font=font)
    return img


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


def overlay_heatmap(rgb: np.ndarray, heat: np.ndarray, alpha: float = 0.4) -> np.ndarray:
    colored = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
    return (rgb * (1 - alpha) + colored * alpha).astype(np.uint8)


def png_bytes(img: Image.Image | np.ndarray) -> bytes:
    if isinstance(img, np.ndarray):
        img = Image.fromarray(img)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
