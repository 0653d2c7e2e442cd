"""Token-level pseudo-labels for the text segmenter (``TextPreprocess.get_noun_masks`` officially).

The caption is tokenised as the text tower sees it (start token at position 0, end token, zero
padding, 77 positions); each noun is tokenised alone (BPE ids without start or end token) and
looked for as an exact run of ids at every start position of the whole sequence. Every occurrence
counts. Labels: ``-1`` (ignored) everywhere, then ``0`` on the tokens of every noun of the caption,
then ``k + 1`` on the tokens of the ``k``-th selected noun (a later noun overwrites an earlier one).
Because the match is on BPE ids, a noun can match the tail of a longer word whose BPE ends the
same way, as officially.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

#: The label of tokens the loss ignores.
IGNORE = -1


def occurrences(sequence: Sequence[int], pattern: Sequence[int]) -> list[int]:
    """Every position covered by an exact occurrence of ``pattern`` in ``sequence``."""
    n = len(pattern)
    if n == 0:
        return []
    pattern = list(pattern)
    covered: set[int] = set()
    for start in range(len(sequence) - n + 1):
        if list(sequence[start : start + n]) == pattern:
            covered.update(range(start, start + n))
    return sorted(covered)


def word_labels(
    caption_ids: Tensor, selected: Sequence[Sequence[int]], nouns: Sequence[Sequence[int]]
) -> Tensor:
    """Labels ``[L]`` (long) for a caption's ids ``[L]``.

    ``selected`` are the BPE ids of the chosen nouns (label ``k + 1``), ``nouns`` those of all the
    caption's nouns, the chosen ones included (label ``0`` where no chosen noun lies).
    """
    sequence = caption_ids.tolist()
    labels = torch.full((len(sequence),), IGNORE, dtype=torch.long)
    for noun in nouns:
        labels[occurrences(sequence, noun)] = 0
    for k, noun in enumerate(selected):
        labels[occurrences(sequence, noun)] = k + 1
    return labels
