"""textseg: text-supervised semantic segmentation methods, one training loop, one scoring harness.

The public surface is small on purpose: the registries (``METHODS``, ``BENCHMARKS``, ``PROTOCOLS``)
and the contracts in :mod:`textseg.api` and :mod:`textseg.benchmark`. Everything else is reached
through the ``textseg`` command or the modules that own it.
"""

__version__ = "0.1.0"
