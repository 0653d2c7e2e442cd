"""Write tests/data/cv2_reference.npz: OpenCV's bilinear resize and mmcv's normalisation of small
random images, the reference textseg.evaluation.preprocess is tested against (without OpenCV).

Needs ``pip install opencv-python-headless`` (not a textseg dependency). Run from the repository root:
``python scripts/make_cv2_resize_fixture.py``.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from textseg.evaluation.protocol import IMAGENET_MEAN, IMAGENET_STD

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
    # Every uint8 value in every channel, so the normalisation is checked exhaustively.
    image = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2).astype(np.float32)
    mean = np.float64(np.array(IMAGENET_MEAN).reshape(1, -1))
    stdinv = 1 / np.float64(np.array(IMAGENET_STD).reshape(1, -1))
    cv2.subtract(image, mean, image)  # mmcv imnormalize_, in place as mmcv does it
    cv2.multiply(image, stdinv, image)
    arrays["normalized_all_values"] = image
    out = Path(__file__).resolve().parents[1] / "tests" / "data" / "cv2_reference.npz"
    np.savez_compressed(out, opencv_version=np.array(cv2.__version__), **arrays)
    print(f"wrote {out} (OpenCV {cv2.__version__})")


if __name__ == "__main__":
    main()
