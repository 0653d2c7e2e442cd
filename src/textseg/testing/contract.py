"""``check_method``: the contract every registered method must pass (run over the registry by the tests).

It builds the method's ``tiny`` preset and checks, on CPU, that

* ``encode_vocabulary`` + ``segment`` give finite ``[B, K, h, w]`` scores (``h <= H``, ``w <= W``,
  ``K = score_channels(vocab)``) for several image sizes (not multiples of the patch size too) and
  vocabulary sizes, with synonyms, deterministically in eval mode, and ``postprocess`` returns one
  channel per class at the same size;
* a trainable method's transform is picklable (it runs in data workers), ``training_step``
  returns a finite scalar ``loss`` whose gradient reaches every trainable parameter, and its
  parameter groups, if any, cover every trainable parameter once;
* the state dict round-trips: a second instance loaded from the first's checkpoint (pretrained
  parts left out, as saved weights are) gives identical scores.

Plugin authors call it from their own tests: ``check_method(MY_SPEC)``.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from PIL import Image

from textseg.api import ImageTextSample, MethodSpec, SegMethod, SkipSample, Vocabulary
from textseg.weights import check_and_load

#: Captions of the synthetic training batch; a method with a noun lexicon should know these nouns.
CONTRACT_CAPTIONS = (
    "a red circle next to a blue square",
    "a dog and a cat on the grass",
    "a photo of a car near a building",
    "a green triangle above a yellow star",
)
CONTRACT_NOUNS = ("circle", "square", "dog", "cat", "grass", "car", "building", "triangle", "star")

_VOCABULARIES = (
    Vocabulary.from_names(["dog"]),
    Vocabulary.from_names(["cat", "car, automobile", "grass"], ("a photo of a {}.", "art of the {}.")),
    Vocabulary.from_names(["circle", "square", "triangle", "star", "sky, blue sky"], ("itap of a {}.",)),
)
_IMAGE_SIZES = ((2, 224, 224), (1, 160, 96), (1, 97, 131))


def _images(batch: int, height: int, width: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, height, width, generator=generator)


def _training_samples(n: int, seed: int) -> list[ImageTextSample]:
    rng = np.random.default_rng(seed)
    return [
        ImageTextSample(
            image=Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)),
            caption=CONTRACT_CAPTIONS[i % len(CONTRACT_CAPTIONS)],
            key=f"{i:09d}",
        )
        for i in range(n)
    ]


def check_inference(method: SegMethod) -> None:
    """Shapes, finiteness and determinism of ``encode_vocabulary`` / ``segment`` / ``postprocess``."""
    method.eval()
    threshold = method.background_threshold()
    assert isinstance(threshold, float), "background_threshold() must return a float"
    with torch.no_grad():
        for seed, vocab in enumerate(_VOCABULARIES):
            text = method.encode_vocabulary(vocab)
            for batch, height, width in _IMAGE_SIZES:
                images = _images(batch, height, width, seed)
                scores = method.segment(images, text)
                where = f"segment({tuple(images.shape)}) with {vocab.num_classes} classes"
                assert scores.ndim == 4, f"{where} returned {scores.ndim} dims, expected [B, K, h, w]"
                channels = method.score_channels(vocab)
                assert scores.shape[:2] == (batch, channels), (
                    f"{where} returned {tuple(scores.shape)}, expected {channels} channels"
                )
                assert scores.shape[2] <= height and scores.shape[3] <= width, (
                    f"{where} returned {tuple(scores.shape)}: larger than the input"
                )
                assert torch.isfinite(scores).all(), f"{where} returned non-finite scores"
                again = method.segment(images, text)
                assert torch.equal(scores, again), f"{where} is not deterministic in eval mode"
                full = torch.nn.functional.interpolate(scores, (height, width), mode="bilinear")
                post = method.postprocess(full, images, text)
                assert post.shape == (batch, vocab.num_classes, height, width), (
                    f"postprocess turned {tuple(full.shape)} into {tuple(post.shape)}; expected one "
                    "channel per class at the same size"
                )
                assert torch.isfinite(post).all(), "postprocess returned non-finite scores"


def check_training(method: SegMethod) -> None:
    """One training step on a synthetic batch: finite loss, gradients everywhere they should be."""
    transform = method.train_transform()
    pickle.dumps(transform)  # it is sent to every data-loader worker
    samples: list[dict[str, Any]] = []
    for sample in _training_samples(8, seed=0):
        try:
            samples.append(transform(sample))
        except SkipSample:
            continue
    assert len(samples) >= 2, "the transform skipped almost every contract sample (see CONTRACT_CAPTIONS)"
    batch = method.collate(samples)
    method.train()
    method.on_train_step(0)
    trainable = {name: p for name, p in method.named_parameters() if p.requires_grad}
    assert trainable, "a trainable method has no parameter with requires_grad"
    groups = method.param_groups(weight_decay=0.05)
    if groups is not None:
        grouped = [id(p) for group in groups for p in group["params"]]
        assert len(grouped) == len(set(grouped)), "a parameter appears in two parameter groups"
        assert set(grouped) >= {id(p) for p in trainable.values()}, (
            "param_groups must cover every trainable parameter"
        )
        # Parameters frozen now may be listed (on_train_step unfreezes them later); pretrained ones not.
        prefixes = method.pretrained_prefixes or ("\0",)
        allowed = {id(p) for name, p in method.named_parameters() if not name.startswith(prefixes)}
        assert set(grouped) <= allowed, "param_groups lists a pretrained parameter or one not in the method"
    losses = method.training_step(batch)
    assert isinstance(losses, Mapping) and "loss" in losses, "training_step must return a dict with 'loss'"
    loss = losses["loss"]
    assert loss.ndim == 0 and torch.isfinite(loss), f"loss must be a finite scalar, got {loss}"
    for name, value in losses.items():
        assert torch.is_tensor(value) and torch.isfinite(value).all(), f"loss term {name!r} is not finite"
    loss.backward()
    no_grad = [name for name, p in trainable.items() if p.grad is None]
    assert not no_grad, f"no gradient reached these trainable parameters: {no_grad}"
    bad = [name for name, p in trainable.items() if not torch.isfinite(p.grad).all()]
    assert not bad, f"non-finite gradients in {bad}"
    method.zero_grad(set_to_none=True)


def check_state_dict_roundtrip(spec: MethodSpec, method: SegMethod, config: Any) -> None:
    """A fresh instance loaded from ``method``'s saved state scores exactly like it."""
    own = method.trainable_state_dict()
    with torch.no_grad():  # move away from the initial values, so a load that does nothing would show
        for name, p in method.named_parameters():
            if name in own:
                p.add_(0.01 * torch.randn_like(p))
    clone = spec.build(config)
    check_and_load(clone, method.trainable_state_dict(), "the method's own state dict")
    method.eval()
    clone.eval()
    vocab = _VOCABULARIES[1]
    images = _images(1, 224, 224, seed=7)
    with torch.no_grad():
        expected = method.segment(images, method.encode_vocabulary(vocab))
        actual = clone.segment(images, clone.encode_vocabulary(vocab))
    assert torch.equal(expected, actual), "a state-dict round trip changed the scores"


def check_method(spec: MethodSpec, overrides: Mapping[str, Any] | None = None, seed: int = 0) -> None:
    """Run every contract check on ``spec``'s ``tiny`` preset; raises AssertionError on a failure."""
    torch.manual_seed(seed)
    config = spec.resolve("tiny", overrides).model
    method = spec.build(config)
    assert isinstance(method, SegMethod), (
        f"{spec.name}.build returned {type(method).__name__}, not a SegMethod"
    )
    check_inference(method)
    if spec.trainable:
        check_training(method)
    check_state_dict_roundtrip(spec, method, config)
