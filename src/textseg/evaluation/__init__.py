"""The shared scoring harness: protocols, sliding windows, metrics, distributed evaluation, records.

``protocol`` (named settings) -> ``data`` (workers decode, ``preprocess`` resizes and normalises) ->
``inference`` (``windows`` placed as mmseg does, batched ``segment`` calls, overlaps averaged) ->
``evaluator.evaluate`` (upsample, background, argmax, ``metrics``) -> ``records`` (results JSON).
"""
