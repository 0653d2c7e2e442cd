"""Write tests/data/cv2_reference.npz: OpenCV's bilinear resize and mmcv's normalisation of small
random images, the reference textseg.evaluation.preprocess is tested against (without OpenCV).

Needs ``pip install opencv-python-headless`` (not a textseg dependency). Run from the repository root:
``python scripts/make_cv2_resize_fixture.py``.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from textseg.evaluation.protocol import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD

#: (source height, width) -> target sizes (height, width): up, down, mixed, exact 2x, 1-pixel cases.
CASES = {
    (23, 31): [(40, 53), (11, 17), (12, 60), (46, 62), (1, 5), (7, 1), (23, 31)],
    (75, 100): [(90, 119), (37, 50)],
    (1, 1): [(9, 9)],
    (2, 3): [(9, 13)],
}


def main() -> None:
    rng = np.random.default_rng(0)
    arrays: dict[str, np.ndarray] = {}
    for (h, w), targets in CASES.items():
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        arrays[f"src_{h}x{w}"] = image
        for th, tw in targets:
            arrays[f"out_{h}x{w}_{th}x{tw}"] = cv2.resize(image, (tw, th), interpolation=cv2.INTER_LINEAR)
    # Every uint8 value in every channel, so the normalisation is checked exhaustively. mmseg 0.x's
    # Normalize keeps mean and std as float32 arrays; mmcv's imnormalize_ widens them to float64.
    for name, (mean_values, std_values) in {
        "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
        "clip": (CLIP_MEAN, CLIP_STD),
    }.items():
        image = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2).astype(np.float32)
        mean32, std32 = np.array(mean_values, dtype=np.float32), np.array(std_values, dtype=np.float32)
        mean = np.float64(mean32.reshape(1, -1))
        stdinv = 1 / np.float64(std32.reshape(1, -1))
        cv2.subtract(image, mean, image)  # mmcv imnormalize_, in place as mmcv does it
        cv2.multiply(image, stdinv, image)
        arrays[f"normalized_all_values_{name}"] = image
    out = Path(__file__).resolve().parents[1] / "tests" / "data" / "cv2_reference.npz"
    np.savez_compressed(out, opencv_version=np.array(cv2.__version__), **arrays)
    print(f"wrote {out} (OpenCV {cv2.__version__})")


if __name__ == "__main__":
    main()
