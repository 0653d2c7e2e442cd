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
    matrix = torch.zeros((num_classes, num_classes), dtype=torch.int64, device=pred.device)
    return add_to_confusion(matrix, pred, label, ignore_index)


def add_to_confusion(matrix: Tensor, pred: Tensor, label: Tensor, ignore_index: int) -> Tensor:
    """Add one image's pixels to ``matrix`` in place and return it.

    A histogram of ``label * K + pred`` as ``bincount`` would give, but built with ``index_add_``:
    CUDA's ``bincount`` waits for the device to find the largest value, which would stall the
    evaluation loop once per image. Ignore pixels add 0.
    """
    num_classes = matrix.shape[0]
    valid = label != ignore_index
    index = torch.where(valid, label.to(torch.int64) * num_classes + pred, 0)
    matrix.view(-1).index_add_(0, index.view(-1), valid.view(-1).to(torch.int64))
    return matrix


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
