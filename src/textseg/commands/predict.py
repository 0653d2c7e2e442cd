"""``textseg predict``: segment one image with free-form class names; write an overlay and a label map.

The image goes through the harness's own steps (``textseg.evaluation``): the protocol's resize,
normalisation and sliding windows, window scores merged, upsampled to the image's size,
post-processed, a background channel at the method's threshold (``--background``, the default),
argmax. So a prediction is exactly what ``textseg bench`` would score for that image.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="segment one image with free-form class names",
        description=(
            "Segment one image with any class names. Classes are comma-separated; give a class several "
            "names with '|' (e.g. 'car|automobile, dog, grass'), it scores the best of them."
        ),
    )
    parser.add_argument(
        "--method", help="a registered method (see `textseg list methods`); optional with a run as --weights"
    )
    parser.add_argument(
        "--weights",
        help="a released checkpoint name, a weights file, or a `textseg train` run folder or checkpoint "
        "(which also restores the run's method, preset and settings)",
    )
    parser.add_argument("--preset", help="the method's preset (default: its default preset)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting (repeatable)"
    )
    parser.add_argument("--image", required=True, type=Path, help="the image to segment")
    parser.add_argument(
        "--classes", required=True, help='comma-separated class names, e.g. "cat, dog, grass"'
    )
    parser.add_argument("--templates", help="prompt template set (default: the protocol's)")
    parser.add_argument(
        "--out", type=Path, help="overlay PNG to write (default: <image name>_overlay.png here)"
    )
    parser.add_argument("--labels", type=Path, help="also write the raw label map (palette PNG) here")
    parser.add_argument(
        "--background",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="label pixels whose every class scores below the method's bg_thresh as background (default: on)",
    )
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.set_defaults(run=run)


def parse_classes(text: str) -> list[tuple[str, ...]]:
    """``"car|automobile, dog"`` -> ``[("car", "automobile"), ("dog",)]``."""
    from textseg.errors import ConfigError

    classes = [tuple(n.strip() for n in item.split("|") if n.strip()) for item in text.split(",")]
    classes = [names for names in classes if names]
    if not classes:
        raise ConfigError(f"--classes {text!r} names no class; give them comma-separated, e.g. 'cat, dog'")
    return classes


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from textseg.benchmark import read_image
    from textseg.config import parse_assignments
    from textseg.evaluation.inference import prediction_vocabulary, segment_image
    from textseg.loading import request_model
    from textseg.overlay import class_colours, render_overlay, save_label_map, save_png
    from textseg.registry import PROTOCOLS
    from textseg.text.templates import get_templates

    request = request_model(args.method, args.weights, args.preset, parse_assignments(args.set))
    config = request.resolve()
    protocol = PROTOCOLS.get(config.protocol)
    classes = parse_classes(args.classes)
    image = read_image(args.image, "--image")

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    method, _ = request.build(config)
    method.to(device).eval()
    vocab, threshold = prediction_vocabulary(
        method, classes, get_templates(args.templates or protocol.templates), args.background
    )
    with torch.no_grad():
        labels, _ = segment_image(method, method.encode_vocabulary(vocab), image, protocol, threshold)
    labels = labels.cpu().numpy().astype(np.int64)

    names = (["background"] if args.background else []) + [c[0] for c in classes]
    colours = class_colours(len(names), background=args.background)
    out = args.out or Path(f"{args.image.stem}_overlay.png")
    save_png(render_overlay(image, labels, names, colours), out)
    print(f"overlay: {out}")
    if args.labels:
        save_label_map(labels, names, colours, args.labels)
        print(f"labels:  {args.labels} (pixel value = index in {names})")
    counts = np.bincount(labels.ravel(), minlength=len(names))
    for index in np.argsort(-counts, kind="stable"):
        if counts[index]:
            print(f"  {names[index]:<24} {100 * counts[index] / labels.size:5.1f}%")
    return 0
