"""How often timm's RandAugment (TCL's ``rand-m9-mstd0.5-inc1``) asks Pillow for a 0-bit posterize.

Pillow 13 raises ``ValueError`` for it (older Pillow returned a black image); TCL's training
transform redraws such samples. Run ``python scripts/randaugment_posterize_rate.py``; measured with
timm 1.0.31 and Pillow 13.0.0: 31 of 20,000 draws (0.15%), ``random`` and ``np.random`` seeded
with 0.
"""

from __future__ import annotations

import random

import numpy as np
from PIL import Image
from timm.data import create_transform


def main(draws: int = 20000) -> None:
    transform = create_transform(
        input_size=32,
        is_training=True,
        color_jitter=0.4,
        auto_augment="rand-m9-mstd0.5-inc1",
        re_prob=0.25,
        re_mode="pixel",
        re_count=1,
    )
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8))
    random.seed(0)  # timm draws magnitudes with `random` and picks ops with `np.random`
    np.random.seed(0)
    failures = 0
    for _ in range(draws):
        try:
            transform(image)
        except ValueError:
            failures += 1
    print(f"{failures} of {draws} draws ({100 * failures / draws:.2f}%) hit the 0-bit posterize")


if __name__ == "__main__":
    main()
