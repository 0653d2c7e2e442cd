"""PAMR: a hand-computed case, a naive loop reference, and invariants."""

from __future__ import annotations

import math

import pytest
import torch

from textseg.evaluation import pamr as pamr_module
from textseg.evaluation.pamr import PAMR


def test_hand_computed_two_pixel_image() -> None:
    """Image [[0, 1]] (one channel), dilation 1, one iteration.

    Pixel (0,0) with replicate padding sees columns (0, 0, 1) in each of 3 rows: window values are six
    0s and three 1s, mean 1/3, unbiased variance (6/9 + 3*4/9) / 8 = 1/4, std 1/2. Its 8 neighbours are
    0,0,1 / 0,1 / 0,0,1, so three differ by 1: affinity -1/(1e-8 + 0.05) ~ -20 for those, 0 for five.
    After the softmax the new value is (5a + 3e^-20 b) / (5 + 3e^-20); by symmetry the same for (0,1).
    """
    image = torch.tensor([[[[0.0, 1.0]]]])
    mask = torch.tensor([[[[2.0, -3.0]]]])
    out = PAMR(num_iter=1, dilations=[1])(image, mask)
    e = math.exp(-1 / (1e-8 + 0.05))
    a, b = 2.0, -3.0
    expected = [(5 * a + 3 * e * b) / (5 + 3 * e), (5 * b + 3 * e * a) / (5 + 3 * e)]
    assert out.flatten().tolist() == pytest.approx(expected, rel=1e-6)


def _naive(image: torch.Tensor, mask: torch.Tensor, iters: int, dilations: list[int]) -> torch.Tensor:
    """Per-pixel loops straight from the definition (clamped indices = replicate padding)."""
    _, c, h, w = image.shape
    offsets = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]

    def at(t: torch.Tensor, ch: int, y: int, x: int) -> float:
        return float(t[0, ch, min(max(y, 0), h - 1), min(max(x, 0), w - 1)])

    aff = torch.zeros(h, w, 8 * len(dilations), dtype=torch.float64)
    for y in range(h):
        for x in range(w):
            per_channel = []
            for ch in range(c):
                window = [at(image, ch, y + dy * d, x + dx * d) for d in dilations for dy, dx in offsets]
                std = torch.tensor(window, dtype=torch.float64).std().item()
                centre = at(image, ch, y, x)
                per_channel.append(
                    [
                        -abs(centre - at(image, ch, y + dy * d, x + dx * d)) / (1e-8 + 0.1 * std)
                        for d in dilations
                        for dy, dx in offsets
                        if (dy, dx) != (0, 0)
                    ]
                )
            aff[y, x] = torch.tensor(per_channel, dtype=torch.float64).mean(0).softmax(0)
    m = mask.double()
    for _ in range(iters):
        new = torch.zeros_like(m)
        for k in range(m.shape[1]):
            for y in range(h):
                for x in range(w):
                    neighbours = [
                        at(m, k, y + dy * d, x + dx * d)
                        for d in dilations
                        for dy, dx in offsets
                        if (dy, dx) != (0, 0)
                    ]
                    new[0, k, y, x] = float((aff[y, x] * torch.tensor(neighbours, dtype=torch.float64)).sum())
        m = new
    return m


def test_matches_a_naive_loop_including_borders() -> None:
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, 6, 7, generator=g)
    mask = torch.rand(1, 2, 6, 7, generator=g)
    out = PAMR(num_iter=3, dilations=[1, 2, 4])(image, mask)
    torch.testing.assert_close(out.double(), _naive(image, mask, 3, [1, 2, 4]), atol=1e-5, rtol=1e-5)


def test_invariants() -> None:
    g = torch.Generator().manual_seed(1)
    image = torch.rand(2, 3, 12, 10, generator=g)
    mask = torch.rand(2, 4, 12, 10, generator=g)
    pamr = PAMR(num_iter=5, dilations=[1, 2])
    out = pamr(image, mask)
    assert out.shape == mask.shape
    # convex combinations: stays within each channel's range; constants are fixed points
    assert (out >= mask.amin((2, 3), keepdim=True) - 1e-6).all() and (
        out <= mask.amax((2, 3), keepdim=True) + 1e-6
    ).all()
    torch.testing.assert_close(pamr(image, torch.full_like(mask, 0.3)), torch.full_like(mask, 0.3))
    # channels are refined independently
    torch.testing.assert_close(pamr(image, mask[:, 1:2]), out[:, 1:2])
    # affinities are a distribution over the 8 * len(dilations) neighbours
    aff = pamr.affinity(image)
    assert aff.shape == (2, 16, 12, 10)
    torch.testing.assert_close(aff.sum(1), torch.ones(2, 12, 10))
    # a smaller mask is first resized to the image (bilinear, align_corners=True)
    small = torch.rand(2, 4, 6, 5, generator=g)
    assert pamr(image, small).shape == (2, 4, 12, 10)
    assert torch.equal(PAMR(num_iter=0)(image, mask), mask)


@pytest.mark.parametrize("block_bytes", [4 * 20 * 23, 3 * 4 * 20 * 23, 1 << 30])
def test_a_batch_equals_its_images_refined_alone(block_bytes: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bit for bit, whatever the CPU blocks (one mask plane, three planes straddling images, all):
    what makes batched evaluation give the labels of the one-window-at-a-time official loops."""
    g = torch.Generator().manual_seed(2)
    image = torch.randn(3, 3, 20, 23, generator=g)
    mask = torch.rand(3, 5, 10, 12, generator=g)  # resized to the image first
    pamr = PAMR(num_iter=3, dilations=[1, 2, 4])
    alone = torch.cat([pamr(image[i : i + 1], mask[i : i + 1]) for i in range(3)])
    monkeypatch.setattr(pamr_module, "CPU_BLOCK_BYTES", block_bytes)
    assert torch.equal(pamr(image, mask), alone)
