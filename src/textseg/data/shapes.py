"""The shapes world: seeded scenes of coloured shapes on textured backgrounds, with captions and labels.

textseg cannot download anything on a fresh machine, so it brings a small world in which every part
of the library can be seen to *learn*: a tiny CLIP is pretrained on the captions, methods are trained
on top of it, and a labelled benchmark of the same world (``textseg.benchmarks.shapes``) scores them.

A scene is 1-3 shapes (:data:`SHAPES`: circle, square, triangle, star) of random colour
(:data:`COLOURS`), size (a drawn radius of a quarter to two fifths of the image side) and position,
standing upright, drawn in order (later ones may cover earlier ones; about 42% of the pixels are
shape) on a textured background of one of the :data:`BACKGROUNDS` tones (smooth colour noise,
sometimes stripes, plus pixel noise). Its caption names the shapes that stay visible, each as
``"a [small|large] <colour> <shape>"`` (``an`` before a vowel), joined by a spatial relation read
from their positions (``"to the left of"``, ``"above"``, ...), by ``"and"`` / ``"next to"``, or
listed; a quarter of the captions with several shapes leave one out, as real captions do; half
end with ``"on a <tone> background"``, and some start with ``"a photo of"``.

The label map holds 0 for background and ``1 + COLOUR_NAMES.index(colour)`` under each shape: the
benchmark's classes are the shapes' *colours*, and the shape words are caption detail the text side
must learn to see past. Why colours: in our trials a tiny CLIP trained on CPU for a few hundred
steps bound colour words to pixels (its MaskCLIP-style dense features gave the right colour to
50-80% of shape pixels, depending on the last-block variant) while its dense shape accuracy stayed
near chance. Background tones are named in captions so that background
patches are pulled towards words that are not class names.

Every scene is a pure function of ``(stream, seed, index)``: the training source draws from stream
:data:`TRAIN_STREAM`, the benchmark from :data:`EVAL_STREAM`, so the benchmark's images are never
trained on, whatever the seeds.

As a training source: ``--data 'shapes:?n=20000&seed=0&size=64'`` generates ``n`` scenes of
``size`` pixels on the fly in the data workers (nothing is written to disk); ``n`` is one epoch.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from textseg.data.sources import RawSample, Record, Source
from textseg.data.spec import DataSpecError, SourceSpec

#: The shape kinds, in label order (label ``1 + i``; 0 is background).
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star")
#: Colour words and their RGB values (every word is a single token of the tiny CLIP's tokenizer).
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 90, 215),
    "yellow": (235, 205, 40),
    "purple": (140, 60, 185),
    "orange": (240, 130, 30),
}
#: The colour words in label order (label ``1 + i``; 0 is background).
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)
#: Background tones and their RGB values: none is a class colour, and captions may name them.
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "grey": (128, 128, 124),
    "white": (215, 214, 208),
    "black": (42, 42, 46),
    "brown": (118, 88, 62),
}
TRAIN_STREAM, EVAL_STREAM = 0, 1
#: Scenes per unit of the training source (the stream splits units over processes and workers).
SCENES_PER_UNIT = 256
#: A shape is named in the caption only if at least this share of it stays visible.
MIN_VISIBLE = 0.35
#: Circumradius per kind relative to the drawn size, so that the kinds cover similar areas.
_SCALE = {"circle": 0.9, "square": 1.05, "triangle": 1.25, "star": 1.3}


@dataclass(frozen=True)
class Shape:
    kind: str
    colour: str
    x: float
    y: float
    radius: float  # the drawn size in pixels, before the per-kind scale
    visible: float = 1.0  # share of its pixels not covered by later shapes


@dataclass(frozen=True)
class Scene:
    image: np.ndarray  # [S, S, 3] uint8
    label: np.ndarray  # [S, S] uint8: 0 background, 1 + COLOUR_NAMES.index(colour)
    caption: str
    shapes: tuple[Shape, ...]


def scene_rng(stream: int, seed: int, index: int) -> np.random.Generator:
    """The generator of scene ``index`` of ``seed`` in ``stream`` (train or eval)."""
    return np.random.default_rng([stream, seed, index])


def polygon(shape: Shape) -> list[tuple[float, float]]:
    """The outline of a non-circle shape, upright (image y grows downwards, so -90 degrees is up)."""
    r, angle = shape.radius * _SCALE[shape.kind], -math.pi / 2
    if shape.kind == "square":
        corners = [(r, angle + math.pi / 4 + k * math.pi / 2) for k in range(4)]  # level sides
    elif shape.kind == "triangle":
        corners = [(r, angle + k * 2 * math.pi / 3) for k in range(3)]
    elif shape.kind == "star":
        corners = [(r if k % 2 == 0 else 0.45 * r, angle + k * math.pi / 5) for k in range(10)]
    else:
        raise ValueError(f"{shape.kind} is not a polygon")
    return [(shape.x + d * math.cos(a), shape.y + d * math.sin(a)) for d, a in corners]


def background(rng: np.random.Generator, size: int) -> tuple[np.ndarray, str]:
    """A textured background ``[S, S, 3]`` (float) of one of the :data:`BACKGROUNDS` tones, and its name."""
    tone = str(rng.choice(list(BACKGROUNDS)))
    base = np.array(BACKGROUNDS[tone], dtype=np.float64) + rng.normal(0, 10, 3)
    coarse = rng.normal(0, 16, (4, 4, 3)).astype(np.float32)
    smooth = np.stack(
        [np.asarray(Image.fromarray(coarse[..., c]).resize((size, size), Image.BICUBIC)) for c in range(3)],
        axis=-1,
    )
    image = base + smooth
    if rng.random() < 0.3:  # stripes
        yy, xx = np.mgrid[0:size, 0:size]
        theta, period = rng.uniform(0, math.pi), rng.uniform(4, 10) * size / 64
        wave = np.sin(2 * math.pi * (xx * math.cos(theta) + yy * math.sin(theta)) / period)
        image = image + rng.uniform(8, 20) * wave[..., None]
    return image, tone


def shape_mask(shape: Shape, size: int) -> np.ndarray:
    """The pixels ``[S, S]`` (bool) a shape covers, rasterised by Pillow without anti-aliasing."""
    canvas = Image.new("1", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    if shape.kind == "circle":
        r = shape.radius * _SCALE["circle"]
        draw.ellipse([shape.x - r, shape.y - r, shape.x + r, shape.y + r], fill=1)
    else:
        draw.polygon(polygon(shape), fill=1)
    return np.asarray(canvas, dtype=bool)


def _place(rng: np.random.Generator, size: int, placed: list[Shape]) -> tuple[float, float, float]:
    """A centre and size for the next shape, preferring spots that do not cover the others much."""
    for _ in range(20):
        radius = rng.uniform(0.25, 0.4) * size
        x, y = rng.uniform(0.5 * radius, size - 0.5 * radius, 2)
        if all(math.hypot(x - s.x, y - s.y) > 0.8 * (radius + s.radius) for s in placed):
            break
    return float(x), float(y), float(radius)


def _phrase(rng: np.random.Generator, shape: Shape, size: int) -> str:
    adjective = ""
    if rng.random() < 0.5:
        if shape.radius < 0.29 * size:
            adjective = "small "
        elif shape.radius > 0.36 * size:
            adjective = "large "
    words = f"{adjective}{shape.colour} {shape.kind}"
    return f"{'an' if words[0] in 'aeiou' else 'a'} {words}"


def _relation(a: Shape, b: Shape) -> str:
    """Where ``a`` is relative to ``b`` (image coordinates: y grows downwards)."""
    dx, dy = a.x - b.x, a.y - b.y
    if abs(dx) >= abs(dy):
        return "to the left of" if dx < 0 else "to the right of"
    return "above" if dy < 0 else "below"


def caption(rng: np.random.Generator, shapes: tuple[Shape, ...], size: int, tone: str) -> str:
    """A caption naming the visible shapes (sometimes leaving one out; see the module docstring)."""
    named = [s for s in shapes if s.visible >= MIN_VISIBLE] or [max(shapes, key=lambda s: s.visible)]
    named = [named[i] for i in rng.permutation(len(named))]
    if len(named) > 1 and rng.random() < 0.25:
        named.pop()
    phrases = [_phrase(rng, s, size) for s in named]
    if len(named) == 1:
        text = phrases[0]
    elif len(named) == 2:
        joiner = _relation(named[0], named[1]) if rng.random() < 0.5 else str(rng.choice(["and", "next to"]))
        text = f"{phrases[0]} {joiner} {phrases[1]}"
    else:
        text = f"{', '.join(phrases[:-1])} and {phrases[-1]}"
    if rng.random() < 0.5:
        text = f"{text} on a {tone} background"
    if rng.random() < 0.2:
        text = f"a photo of {text}"
    return text


def render_scene(rng: np.random.Generator, size: int = 64) -> Scene:
    """One scene of ``size`` x ``size`` pixels drawn from ``rng`` (see the module docstring)."""
    count = int(rng.choice([1, 2, 3], p=[0.25, 0.45, 0.3]))
    pixels, tone = background(rng, size)
    label = np.zeros((size, size), dtype=np.uint8)
    owner = np.zeros((size, size), dtype=np.uint8)  # which shape (1-based, drawing order) is on top
    placed: list[Shape] = []
    areas = []
    for number in range(1, count + 1):
        x, y, radius = _place(rng, size, placed)
        shape = Shape(str(rng.choice(SHAPES)), str(rng.choice(COLOUR_NAMES)), x, y, radius)
        mask = shape_mask(shape, size)
        label[mask] = 1 + COLOUR_NAMES.index(shape.colour)
        owner[mask] = number
        pixels[mask] = np.array(COLOURS[shape.colour]) + rng.normal(0, 12, 3)
        areas.append(max(1, int(mask.sum())))
        placed.append(shape)
    shapes = tuple(
        dataclasses.replace(s, visible=float((owner == i + 1).sum()) / areas[i]) for i, s in enumerate(placed)
    )
    pixels += rng.normal(0, 6, pixels.shape)
    image = np.clip(pixels, 0, 255).astype(np.uint8)
    return Scene(image, label, caption(rng, shapes, size, tone), shapes)


def scene(stream: int, seed: int, index: int, size: int = 64) -> Scene:
    """Scene ``index`` of ``seed`` in ``stream``: the same on every machine and in every process."""
    return render_scene(scene_rng(stream, seed, index), size)


class ShapesSource(Source):
    """``shapes:?n=N&seed=S&size=P``: ``N`` training scenes of ``P`` pixels, generated when read."""

    def __init__(self, spec: SourceSpec) -> None:
        super().__init__(spec)
        self.count = _option(spec, "n", 20000)
        self.seed = _option(spec, "seed", 0, minimum=0)
        self.size = _option(spec, "size", 64, minimum=16)

    @property
    def length(self) -> int:
        return self.spec.length() or self.count

    @property
    def num_units(self) -> int:
        return math.ceil(self.count / SCENES_PER_UNIT)

    def scan(self, unit: int, position: int) -> Iterator[Record]:
        rows = min(SCENES_PER_UNIT, self.count - unit * SCENES_PER_UNIT)
        for row in range(position, rows):
            yield Record(row, row + 1, unit * SCENES_PER_UNIT + row)

    def load(self, unit: int, handle: Any) -> RawSample:
        drawn = scene(TRAIN_STREAM, self.seed, int(handle), self.size)
        return RawSample(f"shapes-{self.seed}-{handle}", Image.fromarray(drawn.image), drawn.caption)


def _option(spec: SourceSpec, key: str, default: int, minimum: int = 1) -> int:
    text = spec.options.get(key)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise DataSpecError(f"--data {spec.text}: {key}={text!r} is not a whole number") from None
    if value < minimum:
        raise DataSpecError(f"--data {spec.text}: {key} must be at least {minimum}, got {value}")
    return value
