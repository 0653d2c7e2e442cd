"""Random scenes for synthetic datasets: a label map of overlapping shapes and an image whose colours
follow the labels (plus noise), at small sizes so tests stay fast.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

MIN_SIDE, MAX_SIDE = 60, 120


def random_size(rng: np.random.Generator) -> tuple[int, int]:
    """(height, width), each in [60, 120]."""
    return int(rng.integers(MIN_SIDE, MAX_SIDE + 1)), int(rng.integers(MIN_SIDE, MAX_SIDE + 1))


def random_shapes(
    rng: np.random.Generator, count: int, height: int, width: int
) -> list[list[tuple[int, int]]]:
    """``count`` random polygons (rectangles and triangles) inside a ``width`` x ``height`` frame."""
    shapes = []
    for _ in range(count):
        x0, x1 = sorted(rng.integers(0, width, 2).tolist())
        y0, y1 = sorted(rng.integers(0, height, 2).tolist())
        x1, y1 = max(x1, x0 + 4), max(y1, y0 + 4)
        if rng.random() < 0.5:
            shapes.append([(x0, y0), (x1, y0), (x1, y1), (x0, y1)])
        else:
            shapes.append([(x0, y1), ((x0 + x1) // 2, y0), (x1, y1)])
    return shapes


def random_label(
    rng: np.random.Generator,
    height: int,
    width: int,
    values: Sequence[int],
    shapes: int = 5,
    wide: bool = False,
) -> np.ndarray:
    """A uint8 map (``wide``: int32, for values past 255) filled with one of ``values`` and painted
    with ``shapes`` polygons of others."""
    image = Image.new("I" if wide else "L", (width, height), int(rng.choice(values)))
    draw = ImageDraw.Draw(image)
    for polygon in random_shapes(rng, shapes, height, width):
        draw.polygon(polygon, fill=int(rng.choice(values)))
    return np.array(image)


def void_borders(label: np.ndarray, value: int = 255) -> np.ndarray:
    """``label`` with every pixel on a region boundary set to ``value`` (VOC's void outlines)."""
    edge = np.zeros(label.shape, dtype=bool)
    edge[1:, :] |= label[1:, :] != label[:-1, :]
    edge[:, 1:] |= label[:, 1:] != label[:, :-1]
    out = label.copy()
    out[edge] = value
    return out


def render_image(rng: np.random.Generator, label: np.ndarray) -> np.ndarray:
    """An RGB uint8 image: a fixed colour per label value (modulo 256) plus noise."""
    palette = np.random.default_rng(12345).integers(0, 256, (256, 3))
    noise = rng.integers(-20, 21, (*label.shape, 3))
    return np.clip(palette[label.astype(np.int64) % 256] + noise, 0, 255).astype(np.uint8)
