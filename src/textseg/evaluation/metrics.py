"""The confusion matrix and mmsegmentation's metrics (``intersect_and_union`` + ``total_area_to_metrics``).

Counts are summed over the whole dataset (and over processes) first; the metrics come from the
sums. For class ``c`` with ``I`` = pixels labelled and predicted ``c``, ``L`` = labelled ``c``,
``P`` = predicted ``c`` (ignore pixels excluded everywhere):

* ``IoU_c = I / (L + P - I)``: NaN when ``c`` is absent from labels and predictions, and then left out
  of mIoU; a class predicted but never labelled has IoU 0 and counts;
* ``Acc_c = I / L``: NaN (left out of mAcc) when ``c`` is never labelled;
* ``aAcc = sum(I) / sum(L)``; mIoU / mAcc are NaN-means; all in percent.

mmseg's tables round to two decimals; textseg keeps full precision and rounds only for display.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


def confusion_matrix(pred: Tensor, label: Tensor, num_classes: int, ignore_index: int) -> Tensor:
    """``[K, K]`` int64 counts, rows = label, columns = prediction, ``ignore_index`` pixels left out.

    ``pred`` and ``label`` have the same shape and live on the same device; ``label`` values other
    than ``ignore_index`` must be below ``num_classes`` (the evaluator checks this per image).
    """
    cells = num_classes * num_classes
    index = label.to(torch.int64) * num_classes + pred
    # Ignore pixels go to one extra bin that is dropped: cheaper than selecting the valid pixels.
    index = torch.where(label == ignore_index, cells, index)
    counts = torch.bincount(index.view(-1), minlength=cells + 1)
    return counts[:cells].view(num_classes, num_classes)


@dataclass(frozen=True)
class Metrics:
    """mIoU, mAcc, aAcc and per-class IoU / Acc, all in percent; NaN where a class is excluded."""

    iou: np.ndarray
    acc: np.ndarray
    mIoU: float
    mAcc: float
    aAcc: float

    def summary(self) -> dict[str, float]:
        return {"mIoU": self.mIoU, "mAcc": self.mAcc, "aAcc": self.aAcc}


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / np.maximum(denominator, 1), np.nan)


def _nanmean(values: np.ndarray) -> float:
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def compute_metrics(confusion: np.ndarray | Tensor) -> Metrics:
    """Metrics of a ``[K, K]`` confusion matrix (rows = label, columns = prediction)."""
    counts = torch.as_tensor(confusion).cpu().numpy().astype(np.float64)
    intersect = np.diag(counts)
    label_area = counts.sum(1)
    pred_area = counts.sum(0)
    iou = _ratio(intersect, label_area + pred_area - intersect) * 100
    acc = _ratio(intersect, label_area) * 100
    total = label_area.sum()
    a_acc = float(intersect.sum() / total * 100) if total > 0 else float("nan")
    return Metrics(iou=iou, acc=acc, mIoU=_nanmean(iou), mAcc=_nanmean(acc), aAcc=a_acc)
