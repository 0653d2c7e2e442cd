"""The shapes benchmark (``shapes``) and its protocol: held-out scenes of the shapes world with labels.

Scenes come from :mod:`textseg.data.shapes` (coloured circles, squares, triangles and stars on
textured backgrounds), drawn from the evaluation stream, which the training source
(``--data shapes:...``) never draws from. The classes are the shapes' colours (red, green, blue,
yellow, purple, orange); the shape kind is caption detail the text side must learn to see past.
Class 0 is background, predicted by each method's threshold as on VOC21.

The layout, under the data root: ``shapes/images/validation/<id>.png`` (RGB, 64 x 64, lossless)
and ``shapes/annotations/validation/<id>.png`` (0 background, then 1-6 in the colour order above). It is written, not downloaded: ``textseg data synthetic shapes --out DIR -n 200 [--seed S]``
writes scenes ``0 .. n-1`` of seed ``S`` as ``<S>-<index>``. Any number of scenes is a valid split;
records carry how many were scored. Version 1 fixes the classes, the 64-pixel size and the scene
generator; a change to any of them bumps it.

The ``shapes`` protocol is the ``tcl`` protocol at this scale: the whole 64-pixel image at once (no
windows), ImageNet mean/std, and the template ``"a photo of a {}."`` (the captions of this world
say "a photo of a red circle"; the ``tcl`` protocol's nine templates use words such as "origami"
that a CLIP pretrained only on this world has never seen).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from textseg.benchmark import BenchmarkSpec
from textseg.data.shapes import COLOUR_NAMES, EVAL_STREAM, scene
from textseg.evaluation.protocol import Protocol

from ._files import save_png
from ._layout import FolderLayout

VERSION = "1"
SIZE = 64
BASE = "shapes"


@dataclass(frozen=True)
class ShapesLayout(FolderLayout):
    """``shapes/{images,annotations}/validation`` under the data root; see the module docstring."""

    def write_synthetic(self, root: Path, num_classes: int, n: int, seed: int = 0) -> None:
        """Scenes ``0 .. n-1`` of ``seed`` from the evaluation stream (``num_classes`` is fixed: 7)."""
        base = Path(root) / BASE
        for index in tqdm(range(n), desc="shapes benchmark", unit="img", leave=False, disable=n < 100):
            drawn = scene(EVAL_STREAM, seed, index, SIZE)
            name = f"{seed}-{index:06d}.png"
            save_png(base / self.img_dir / name, drawn.image)
            save_png(base / self.ann_dir / name, drawn.label)

    def fix_commands(self, root: Path) -> list[str]:
        return [f"textseg data synthetic shapes --out {root} -n 200"]


SHAPES_BENCHMARK = BenchmarkSpec(
    name="shapes",
    version=VERSION,
    summary="the generated shapes world: coloured shapes on textured backgrounds, classes are the colours (64 px)",
    classes=("background", *COLOUR_NAMES),
    background=True,
    layout=ShapesLayout(
        benchmark="shapes",
        title="the shapes world",
        base=BASE,
        img_dir="images/validation",
        ann_dir="annotations/validation",
        img_suffix=".png",
        seg_suffix=".png",
        split_file=None,
        raw_hint="nothing: the benchmark is generated",
    ),
    data_hint="textseg data synthetic shapes --out <data root> -n 200",
    protocol="shapes",  # scored at its own 64 px, whatever protocol a method was published with
)

PROTOCOL = Protocol(
    name="shapes",
    version="2",  # 2: mmseg's normalisation exactly (see textseg.evaluation.preprocess)
    summary="the tcl protocol for the 64 px shapes world: whole image, ImageNet norm, 'a photo of a {}.'",
    short_side=SIZE,
    crop=None,
    templates="simple",
)
