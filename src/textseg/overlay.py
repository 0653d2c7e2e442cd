"""Pictures of a segmentation: a colour overlay with a legend, and a palette label map.

Colours come from the PASCAL VOC colour map (index 0 is black, the colour of background), so a
label map written here opens in any viewer with the colours people expect from VOC.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

from textseg.io import atomic_path

Colour = tuple[int, int, int]


def voc_colour(index: int) -> Colour:
    """The PASCAL VOC colour of ``index`` (bits of the index spread over R, G, B from the top bit down)."""
    r = g = b = 0
    for shift in range(7, -1, -1):
        r |= (index & 1) << shift
        g |= ((index >> 1) & 1) << shift
        b |= ((index >> 2) & 1) << shift
        index >>= 3
    return r, g, b


def class_colours(num_labels: int, background: bool) -> list[Colour]:
    """One colour per label; black is kept for background, so without it labels start at colour 1."""
    offset = 0 if background else 1
    return [voc_colour(i + offset) for i in range(num_labels)]


def blend(image: np.ndarray, labels: np.ndarray, colours: Sequence[Colour], alpha: float = 0.5) -> np.ndarray:
    """``image`` [H, W, 3] uint8 mixed with each pixel's label colour: ``(1 - alpha) image + alpha colour``."""
    table = np.asarray(colours, dtype=np.float32)
    mixed = (1 - alpha) * image.astype(np.float32) + alpha * table[labels]
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def legend_panel(entries: Sequence[tuple[str, Colour]], height: int, font_size: int) -> Image.Image:
    """A white panel listing ``(text, colour)`` entries, each with a filled swatch."""
    font = _font(font_size)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    line = font_size + font_size // 2
    pad = font_size // 2
    widest = max((measure.textbbox((0, 0), text, font=font)[2] for text, _ in entries), default=0)
    panel = Image.new(
        "RGB", (pad * 3 + font_size + widest, max(height, pad * 2 + line * len(entries))), "white"
    )
    draw = ImageDraw.Draw(panel)
    for row, (text, colour) in enumerate(entries):
        top = pad + row * line
        draw.rectangle([pad, top, pad + font_size - 1, top + font_size - 1], fill=colour)
        draw.text((pad * 2 + font_size, top), text, fill="black", font=font)
    return panel


def render_overlay(
    image: np.ndarray, labels: np.ndarray, names: Sequence[str], colours: Sequence[Colour], alpha: float = 0.5
) -> Image.Image:
    """The blended image with a legend on its right listing the predicted labels (and their area)."""
    height, width = labels.shape
    counts = np.bincount(labels.ravel(), minlength=len(names))
    entries = [
        (f"{names[i]} ({100 * counts[i] / labels.size:.1f}%)", colours[i])
        for i in np.argsort(-counts, kind="stable")
        if counts[i] > 0
    ]
    panel = legend_panel(entries, height, font_size=max(12, min(height, width) // 30))
    canvas = Image.new("RGB", (width + panel.width, max(height, panel.height)), "white")
    canvas.paste(Image.fromarray(blend(image, labels, colours, alpha)), (0, 0))
    canvas.paste(panel, (width, 0))
    return canvas


def save_png(picture: Image.Image, path: str | Path, info: PngInfo | None = None) -> Path:
    """Write a PNG atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        picture.save(tmp, format="PNG", pnginfo=info)
    return path


def save_label_map(
    labels: np.ndarray, names: Sequence[str], colours: Sequence[Colour], path: str | Path
) -> Path:
    """The raw label map as a palette PNG: pixel values are label indices, names in a ``classes`` text chunk."""
    if len(names) > 256:
        raise ValueError(f"a PNG label map holds at most 256 labels, got {len(names)}")
    height, width = labels.shape
    picture = Image.frombytes("P", (width, height), np.ascontiguousarray(labels, dtype=np.uint8).tobytes())
    picture.putpalette([c for colour in colours for c in colour])
    info = PngInfo()
    info.add_text("classes", json.dumps(list(names)))
    return save_png(picture, path, info)
