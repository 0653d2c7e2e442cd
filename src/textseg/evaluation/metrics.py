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


class ConfusionMatrix:
    """A ``[K, K]`` confusion matrix (rows = label, columns = prediction) accumulated on the device.

    Counts go to a ``[K + 1, K]`` table: every label value from ``K`` on (only the ignore index,
    which must not be a class, reaches it: the evaluator refuses other out-of-range labels) is
    clamped to row ``K``, dropped when the matrix is read, so no per-image mask is needed. Labels
    are uint8, or wider for benchmarks with more than 255 classes (ignore index 65535). The table is
    filled with ``index_add_``, the histogram ``bincount`` would give: CUDA's ``bincount`` waits for
    the device to find the largest value, which would stall the evaluation loop once per image.
    """

    def __init__(self, num_classes: int, ignore_index: int, device: torch.device | str = "cpu") -> None:
        if not 0 < num_classes <= ignore_index:
            raise ValueError(
                f"the ignore index must be a label value that is not a class: got {ignore_index} "
                f"for {num_classes} classes"
            )
        self.num_classes = num_classes
        self._table = torch.zeros((num_classes + 1) * num_classes, dtype=torch.int64, device=device)
        self._one = torch.ones(1, dtype=torch.int64, device=device)

    def add(self, pred: Tensor, label: Tensor) -> None:
        """Count one image: ``pred`` (class indices) and ``label`` (class indices or ignore), same shape."""
        k = self.num_classes
        index = label.to(torch.int64, copy=True).clamp_(max=k).mul_(k).add_(pred).view(-1)
        self._table.index_add_(0, index, self._one.expand(index.numel()))

    @property
    def matrix(self) -> Tensor:
        return self._table.view(self.num_classes + 1, self.num_classes)[: self.num_classes]


def confusion_matrix(pred: Tensor, label: Tensor, num_classes: int, ignore_index: int) -> Tensor:
    """The confusion matrix of one prediction, ``ignore_index`` pixels left out."""
    counts = ConfusionMatrix(num_classes, ignore_index, pred.device)
    counts.add(pred, label)
    return counts.matrix


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
