"""Window placement, checked against grids worked out by hand from mmseg 0.x ``slide_inference``."""

from __future__ import annotations

import pytest

from textseg.evaluation.windows import Window, window_grid


def test_voc_landscape_gets_two_windows_snapped_to_the_border() -> None:
    # 597 x 448 (W x H), crop 448, stride 224: cols = (597 - 448 + 223) // 224 + 1 = 2; the second
    # window starts at 224 but is shifted back to end at 597, so it starts at 149.
    assert window_grid(448, 597, 448, 224) == [Window(0, 448, 0, 448), Window(0, 448, 149, 597)]


def test_exact_fit_is_one_window() -> None:
    assert window_grid(448, 448, 448, 224) == [Window(0, 448, 0, 448)]


def test_grid_of_a_wide_image() -> None:
    # 1000 wide: cols = (1000 - 448 + 223) // 224 + 1 = 4 at x = 0, 224, 448, 672; the last ends at
    # min(672 + 448, 1000) = 1000 and starts at 552.
    lefts = [w.left for w in window_grid(448, 1000, 448, 224)]
    assert lefts == [0, 224, 448, 552]
    assert all(w.shape == (448, 448) for w in window_grid(448, 1000, 448, 224))


def test_two_dimensional_grid_is_row_major() -> None:
    # 600 x 500 (H x W), crop 448, stride 224: rows = (600 - 448 + 223) // 224 + 1 = 2, cols = 2.
    assert window_grid(600, 500, 448, 224) == [
        Window(0, 448, 0, 448),
        Window(0, 448, 52, 500),
        Window(152, 600, 0, 448),
        Window(152, 600, 52, 500),
    ]


def test_image_smaller_than_the_crop_gives_smaller_windows() -> None:
    assert window_grid(200, 300, 448, 224) == [Window(0, 200, 0, 300)]
    # Capped long side: 2048 x 307 resized image, crop 448 -> one row of 307-high windows.
    grid = window_grid(307, 2048, 448, 224)
    assert len(grid) == (2048 - 448 + 223) // 224 + 1 == 9
    assert {w.shape for w in grid} == {(307, 448)} and grid[-1].right == 2048


def test_stride_not_dividing_leaves_no_gap() -> None:
    grid = window_grid(50, 70, 32, 20)  # rows = (50-32+19)//20+1 = 2, cols = (70-32+19)//20+1 = 3
    assert [(w.top, w.left) for w in grid] == [(0, 0), (0, 20), (0, 38), (18, 0), (18, 20), (18, 38)]
    covered = {(y, x) for w in grid for y in range(w.top, w.bottom) for x in range(w.left, w.right)}
    assert len(covered) == 50 * 70


def test_no_crop_is_the_whole_image() -> None:
    assert window_grid(123, 45, None, 224) == [Window(0, 123, 0, 45)]


def test_bad_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="positive"):
        window_grid(10, 10, 8, 0)
