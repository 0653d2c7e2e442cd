"""textseg: text-supervised semantic segmentation methods, one training loop, one scoring harness.

The public surface is small on purpose: :func:`load`, :func:`predict` and :func:`evaluate` (the
Python twins of ``--weights``, ``textseg predict`` and ``textseg bench``, see :mod:`textseg.facade`),
the registries (``textseg.registry``) and the contracts in :mod:`textseg.api` and
:mod:`textseg.benchmark`. Heavy modules load on first use, so ``import textseg`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["evaluate", "load", "predict"]

if TYPE_CHECKING:
    from textseg.facade import evaluate, load, predict


def __getattr__(name: str) -> Any:
    if name in __all__:
        from textseg import facade

        return getattr(facade, name)
    raise AttributeError(f"module 'textseg' has no attribute {name!r}")
