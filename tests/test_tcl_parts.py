"""TCL's pieces against hand-computed values: decoder, Gumbel straight-through, Sim2Mask, losses,
masked pooling, the positive/negative split and the inference pipeline's order of operations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from textseg import contrastive
from textseg.methods.tcl import losses
from textseg.methods.tcl.decoder import GatedConv, GDecoder
from textseg.methods.tcl.inference import KpBranch, generate_masks
from textseg.methods.tcl.losses import ExtendedInfoNCE, InfoNCE, area_loss, masked_pool, tv_loss
from textseg.methods.tcl.masks import Sim2Mask, gumbel_sigmoid, split_pairs

SCALE = 1 / 0.07  # exp(initial logit scale)


def _ce(logit_of_label: float, *others: float) -> float:
    """-log softmax at the label, written out: log(1 + Σ exp(other - label))."""
    return math.log(1 + sum(math.exp(o - logit_of_label) for o in others))


# -- decoder ---------------------------------------------------------------------------------------
def test_decoder_is_nearest_upsampling_at_init_and_not_once_gates_open() -> None:
    torch.manual_seed(0)
    decoder = GDecoder(8, layers=2, double=True)
    x = torch.randn(2, 8, 3, 5)
    expected = x.repeat_interleave(4, dim=2).repeat_interleave(4, dim=3)
    assert decoder.stride == 4
    assert torch.equal(decoder(x), expected)
    # the convolutions are random, not zero: the gates alone switch the branches off
    assert all(conv.conv.weight.abs().sum() > 0 for stage in decoder.stages for conv in stage.convs)
    with torch.no_grad():
        decoder.stages[1].convs[1].gate.gate.fill_(0.5)
    assert not torch.allclose(decoder(x), expected)


def test_gated_conv_is_tanh_gate_times_conv_of_gelu_of_channel_layernorm() -> None:
    torch.manual_seed(1)
    block = GatedConv(4, kernel=3)
    with torch.no_grad():
        block.gate.gate.fill_(0.7)
        block.norm.weight.uniform_(0.5, 1.5)
        block.norm.bias.uniform_(-0.5, 0.5)
    x = torch.randn(1, 4, 5, 6)
    mean = x.mean(1, keepdim=True)
    var = x.var(1, unbiased=False, keepdim=True)
    normed = (x - mean) / torch.sqrt(var + 1e-5) * block.norm.weight.view(1, 4, 1, 1) + block.norm.bias.view(
        1, 4, 1, 1
    )
    activated = 0.5 * normed * (1 + torch.erf(normed / math.sqrt(2)))
    conv = F.conv2d(activated, block.conv.weight, block.conv.bias, padding=1)
    torch.testing.assert_close(block(x), math.tanh(0.7) * conv)


def test_single_conv_stages_for_codes_decoder() -> None:
    decoder = GDecoder(8, layers=2, double=False)
    assert [len(stage.convs) for stage in decoder.stages] == [1, 1]


# -- Gumbel and Sim2Mask ---------------------------------------------------------------------------
def test_gumbel_straight_through_hard_forward_soft_gradient() -> None:
    logits = torch.linspace(-3, 3, 50, requires_grad=True)
    upstream = torch.linspace(0.5, 2.0, 50)
    torch.manual_seed(3)
    hard = gumbel_sigmoid(logits, tau=0.5, hard=True)
    (hard * upstream).sum().backward()
    # the same noise, by hand
    torch.manual_seed(3)
    u = torch.rand(50)
    soft = torch.sigmoid((logits.detach() + torch.log(u / (1 - u))) / 0.5)
    assert set(hard.detach().unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(hard.detach(), (soft > 0.5).float())
    torch.testing.assert_close(logits.grad, upstream * soft * (1 - soft) / 0.5)


def test_gumbel_noise_is_logistic() -> None:
    """P(hard = 1) = P(logit + L > 0) = sigmoid(logit) for logistic noise L."""
    torch.manual_seed(0)
    samples = gumbel_sigmoid(torch.full((40000,), 1.0), hard=True)
    assert abs(samples.mean().item() - 1 / (1 + math.exp(-1))) < 0.01


def test_sim2mask_init_and_deterministic_masks() -> None:
    sim2mask = Sim2Mask()
    assert sim2mask.w.ndim == 0 and sim2mask.b.ndim == 0
    similarity = torch.tensor([0.0, 0.2, 0.25, 0.3, 1.0])
    hard, soft = sim2mask(similarity, deterministic=True)
    torch.testing.assert_close(soft, torch.sigmoid(similarity * 10 - 2.5))
    assert hard.tolist() == [0.0, 0.0, 0.0, 1.0, 1.0]  # sigmoid(0) = 0.5 is not > 0.5


def test_split_pairs_with_an_offset() -> None:
    soft = torch.arange(2 * 4 * 1 * 1, dtype=torch.float).view(2, 4, 1, 1)
    masks = split_pairs(-soft, soft, offset=2)  # images of the second process of two
    assert masks.pos.flatten().tolist() == [-2.0, -7.0]
    assert masks.soft_pos.flatten().tolist() == [2.0, 7.0]
    assert masks.soft_neg.flatten(1).tolist() == [[0.0, 1.0, 3.0], [4.0, 5.0, 6.0]]
    assert masks.soft_all is soft


# -- losses ----------------------------------------------------------------------------------------
def test_masked_pool_by_hand() -> None:
    embedding = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[10.0, 20.0], [30.0, 40.0]]]])  # [1, 2, 2, 2]
    masks = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]], [[0.5, 0.5], [0.0, 0.0]]]])  # [1, 2, 2, 2]
    pooled = masked_pool(embedding, masks)
    expected = torch.tensor([[[5 / 2.000001, 50 / 2.000001], [1.5 / 1.000001, 15 / 1.000001]]])
    torch.testing.assert_close(pooled, expected)


def test_tv_and_area_by_hand() -> None:
    x = torch.tensor([[[[0.0, 1.0, 3.0], [2.0, 2.0, 2.0]]]])
    # horizontal |diffs|: 1, 2, 0, 0 -> 0.75; vertical: 2, 1, 1 -> 4/3
    torch.testing.assert_close(tv_loss(x), torch.tensor(0.75 + 4 / 3))
    masks = torch.tensor([[[[0.2, 0.4]], [[0.6, 1.0]]]])
    torch.testing.assert_close(area_loss(masks, 0.4), torch.tensor(0.15))
    torch.testing.assert_close(area_loss(masks, 0.0), torch.tensor(0.55))


def test_infonce_by_hand() -> None:
    loss = InfoNCE()
    image = torch.tensor([[3.0, 0.0], [0.0, 3.0]])  # unit vectors, scaled: normalisation is inside
    text = torch.tensor([[2.0, 0.0], [1.2, 1.6]])
    # per image: [[1, .6], [0, .8]]; per text: [[1, 0], [.6, .8]]
    s = SCALE
    expected = 0.5 * ((_ce(s, 0.6 * s) + _ce(0.8 * s, 0.0)) / 2 + (_ce(s, 0.0) + _ce(0.8 * s, 0.6 * s)) / 2)
    assert loss(image, text).item() == pytest.approx(expected, rel=1e-5)
    with torch.no_grad():
        loss.logit_scale.fill_(math.log(1000.0))  # clamped to 100
    close = torch.tensor([[1.0, 0.0], [0.995, math.sqrt(1 - 0.995**2)]])  # cosines 1 and 0.995
    # every row: label logit 100, the other 99.5
    assert loss(close, close).item() == pytest.approx(_ce(100.0, 99.5), rel=1e-5)


def test_extended_infonce_by_hand_on_one_process() -> None:
    """per image: <V[b, n], T[n]>; per text: <V[n, b], T[b]> (image n pooled with text b's mask)."""
    v = torch.tensor([[[1.0, 0.0], [0.6, 0.8]], [[0.0, 1.0], [0.8, 0.6]]]) * 2  # V[b, n]
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0]]) * 5
    s = SCALE
    # per image: [[1, .8], [0, .6]]; per text: [[1, 0], [.8, .6]]
    expected = 0.5 * ((_ce(s, 0.8 * s) + _ce(0.6 * s, 0.0)) / 2 + (_ce(s, 0.0) + _ce(0.6 * s, 0.8 * s)) / 2)
    assert ExtendedInfoNCE()(v, t).item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="expected batch x world"):
        ExtendedInfoNCE()(v[:, :1], t)


def test_extended_infonce_gathers_the_diagonal_chunk_across_processes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Process 1 of 2 (B = 2): its loss is the global definition restricted to its rows."""
    torch.manual_seed(0)
    world, batch, rank = 2, 2, 1
    pooled_all = torch.randn(world * batch, world * batch, 3)  # image n under text m's mask
    text_all = torch.randn(world * batch, 3)
    unit_pooled, unit_text = F.normalize(pooled_all, dim=-1), F.normalize(text_all, dim=-1)

    def fake_gather(x: torch.Tensor) -> torch.Tensor:  # what all_gather would return on process 1
        return unit_text if x.ndim == 2 else unit_pooled[:, rank * batch : (rank + 1) * batch]

    monkeypatch.setattr(losses, "gather_with_grad", fake_gather)
    monkeypatch.setattr(losses, "world_size", lambda: world)
    monkeypatch.setattr(losses, "rank", lambda: rank)  # which chunk of the pooled images is local
    monkeypatch.setattr(contrastive, "rank", lambda: rank)  # where the positives sit
    local = slice(rank * batch, (rank + 1) * batch)
    value = ExtendedInfoNCE()(pooled_all[local], text_all[local]).item()
    expected = 0.0
    for b in range(rank * batch, (rank + 1) * batch):
        per_image = [SCALE * float(unit_pooled[b, n] @ unit_text[n]) for n in range(world * batch)]
        per_text = [SCALE * float(unit_pooled[n, b] @ unit_text[b]) for n in range(world * batch)]
        for row in (per_image, per_text):
            expected += 0.5 * _ce(row[b], *(x for n, x in enumerate(row) if n != b)) / batch
    assert value == pytest.approx(expected, rel=1e-5)


# -- the inference pipeline -------------------------------------------------------------------------
def test_generate_masks_pads_refines_then_mixes_then_crops() -> None:
    images = torch.randn(1, 3, 97, 131)
    seen = {}

    def masks_and_kp(padded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        seen["padded"] = padded
        h, w = padded.shape[-2] // 4, padded.shape[-1] // 4
        return torch.full((1, 2, h, w), 0.2), torch.full((1, 2, h // 4, w // 4), 0.45)

    def pamr(image: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:  # stands in for PAMR
        seen["pamr_image"] = image.shape
        return torch.ones_like(masks)

    kp = KpBranch(0.3)
    out = generate_masks(images, 16, masks_and_kp, pamr, kp)
    # padded to 112 x 144, centred: rows 7 above / 8 below, columns 6 left / 7 right
    assert seen["padded"].shape[-2:] == (112, 144)
    assert torch.equal(seen["padded"][..., 7:104, 6:137], images)
    assert seen["padded"][..., :7, :].abs().sum() == 0 and seen["padded"][..., :, 137:].abs().sum() == 0
    assert seen["pamr_image"][-2:] == (28, 36)  # PAMR runs at the masks' 1/4 resolution
    assert out.shape == (1, 2, 97, 131)
    # PAMR first (masks -> 1), then the kp mix: 0.3 * sigmoid((0.45 - 0.25) * 10) + 0.7 * 1
    torch.testing.assert_close(out, torch.full_like(out, 0.3 * torch.sigmoid(torch.tensor(2.0)).item() + 0.7))
    no_kp = generate_masks(images, 16, masks_and_kp, None, KpBranch(0.0))
    torch.testing.assert_close(no_kp, torch.full_like(no_kp, 0.2))
