"""ViL-Seg: the losses on hand-computed cases, the clustering objective reaching its optimum,
cluster-level classification, the HF-CLIP -> timm mapping, the training views and the EMA teacher.
(The contract itself runs in test_contract.py over every registered method.)"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from textseg.api import ImageTextSample, SkipSample, Vocabulary
from textseg.clip import load_clip
from textseg.contrastive import clip_loss
from textseg.errors import ConfigError
from textseg.methods.vilseg import SPEC, VilSeg
from textseg.methods.vilseg.clustering import ClusterHead, classify_clusters
from textseg.methods.vilseg.losses import iic_loss, local_global_loss
from textseg.methods.vilseg.transform import sample_boxes, unflip
from textseg.testing.contract import check_method


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """These tensors are tiny: extra threads only add contention on a shared CI machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _tiny(**overrides: object) -> VilSeg:
    torch.manual_seed(0)
    return SPEC.build(SPEC.resolve("tiny", overrides).model)


# -- losses -----------------------------------------------------------------------------------
def test_iic_loss_is_minus_log_c_for_perfect_balanced_agreement() -> None:
    onehot = F.one_hot(torch.tensor([0, 1, 2, 0, 1, 2]), 3).float()
    assert iic_loss(onehot, onehot).item() == pytest.approx(-math.log(3), abs=1e-5)


def test_iic_loss_is_zero_for_independent_or_collapsed_assignments() -> None:
    uniform = torch.full((5, 4), 0.25)
    assert iic_loss(uniform, uniform).item() == pytest.approx(0.0, abs=1e-5)
    collapsed = F.one_hot(torch.zeros(6, dtype=torch.long), 4).float()
    assert iic_loss(collapsed, collapsed).item() == pytest.approx(0.0, abs=1e-5)


def test_contrastive_losses_on_hand_computed_cases() -> None:
    same = F.normalize(torch.ones(4, 3), dim=-1)  # every pair equally similar: loss = log(B)
    assert clip_loss(same, same, torch.tensor(10.0)).item() == pytest.approx(math.log(4), abs=1e-5)
    basis = torch.eye(3)
    assert clip_loss(basis, basis, torch.tensor(100.0)).item() < 1e-6
    # two local crops per image; each matches its own image's global view exactly
    local = basis.repeat_interleave(2, dim=0)
    assert local_global_loss(local, basis, temperature=0.01).item() < 1e-6
    wrong = basis.roll(1, dims=0).repeat_interleave(2, dim=0)
    assert local_global_loss(wrong, basis, temperature=0.01).item() > 50


# -- the clustering objective reaches its known optimum ---------------------------------------
def _patch_colours(image: torch.Tensor, patch: int) -> torch.Tensor:
    """A fixed 'encoder': each patch's mean colour, L2-normalised, as a ``[h, w, 3]`` map."""
    pooled = F.avg_pool2d(image.unsqueeze(0), patch)[0].permute(1, 2, 0)
    return F.normalize(pooled, dim=-1)


def test_clustering_two_views_of_a_two_region_image_reach_a_confident_balanced_assignment() -> None:
    generator = torch.Generator().manual_seed(0)
    # Red above the diagonal, blue below, the diagonal shared: 32 patches each (8x8 patches of 8 px).
    # A mirrored view pairs many red patches with blue ones, so only the right correspondence
    # reaches the optimum.
    y, x = torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij")
    red = (x > y) | ((x == y) & (x % 2 == 0))
    red = red.repeat_interleave(8, 0).repeat_interleave(8, 1)
    image = torch.where(
        red, torch.tensor([0.9, 0.2, 0.1])[:, None, None], torch.tensor([0.1, 0.3, 0.9])[:, None, None]
    )
    first = image + 0.05 * torch.randn(image.shape, generator=generator)
    # second view: brighter and noisier, mirrored; ``unflip`` restores the correspondence
    second = (1.2 * image + 0.05 * torch.randn(image.shape, generator=generator)).flip(-1)
    view1 = _patch_colours(first, 8)
    view2 = unflip(_patch_colours(second, 8).unsqueeze(0), torch.tensor([True]))[0]

    torch.manual_seed(0)
    head = ClusterHead(3, 2, "mlp")
    optimizer = torch.optim.Adam(head.parameters(), lr=0.01)
    initial = iic_loss(head(view1).softmax(-1).flatten(0, 1), head(view2).softmax(-1).flatten(0, 1)).item()
    for _ in range(300):
        loss = iic_loss(head(view1).softmax(-1).flatten(0, 1), head(view2).softmax(-1).flatten(0, 1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    assert initial > -0.5 * math.log(2)
    assert loss.item() == pytest.approx(-math.log(2), abs=0.02)
    probs = head(view1).softmax(-1)  # [8, 8, 2]
    patch_red = red[::8, ::8]
    on_red, on_blue = probs.argmax(-1)[patch_red], probs.argmax(-1)[~patch_red]
    assert on_red.unique().numel() == 1 and on_blue.unique().numel() == 1 and on_red[0] != on_blue[0]
    assert probs.amax(-1).min() > 0.95  # confident
    assert probs.mean((0, 1)).sub(0.5).abs().max() < 0.02  # balanced


# -- inference: patches are classified through their cluster ----------------------------------
def test_classify_clusters_pools_each_cluster_and_labels_it_as_a_whole() -> None:
    a, b = [1.0, 0.0], [0.0, 1.0]
    # a 2x3 image: cluster 0 = left four patches (one of them looks like class "b" on its own),
    # cluster 1 = right column.
    patches = F.normalize(torch.tensor([[a, [0.2, 1.0], b], [a, a, b]]), dim=-1).unsqueeze(0)
    assign = torch.tensor([[[0, 0, 1], [0, 0, 1]]])
    names = F.normalize(torch.tensor([a, b, [0.6, 0.8]]), dim=-1)  # class 1 has two names (synonyms)
    scores = classify_clusters(patches, assign, names, torch.tensor([0, 1, 1]), 2, 3, temperature=0.1)

    assert scores.shape == (1, 2, 2, 3)
    # by hand: cluster 0's mean embedding is (3 + 0.196, 0.981) / norm -> cosines (0.956, 0.293) with
    # "a" and "b"; its best name for class 1 is the synonym: 0.6*0.956 + 0.8*0.293 = 0.808
    mean0 = F.normalize(patches[0, :, :2].reshape(-1, 2).mean(0), dim=0)
    cos_a, cos_b = mean0[0], torch.maximum(mean0[1], mean0 @ names[2])
    expected0 = torch.softmax(torch.stack([cos_a, cos_b]) / 0.1, 0)
    for y, x in [(0, 0), (0, 1), (1, 0), (1, 1)]:
        torch.testing.assert_close(scores[0, :, y, x], expected0)
    expected1 = torch.softmax(torch.tensor([0.0, 1.0]) / 0.1, 0)  # right column: exactly "b"
    torch.testing.assert_close(scores[0, :, :, 2], expected1[:, None].expand(2, 2))
    labels = scores[0].argmax(0)
    assert labels.tolist() == [[0, 0, 1], [0, 0, 1]]  # the "b"-looking patch follows its cluster


def test_segment_gives_every_patch_of_a_cluster_the_same_scores() -> None:
    method = _tiny().eval()
    text = method.encode_vocabulary(Vocabulary.from_names(["cat", "dog", "sky, blue sky"]))
    images = torch.randn(2, 3, 96, 128, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        scores = method.segment(images, text)
        _, patches = method.visual(images)
        assign = method.cluster_head(F.normalize(patches, dim=-1)).argmax(-1)
    assert scores.shape == (2, 3, 6, 8)
    torch.testing.assert_close(scores.sum(1), torch.ones(2, 6, 8))
    for b in range(2):
        clusters = assign[b].unique()
        assert len(clusters) > 1, "the test needs an image split into several clusters"
        for c in clusters:
            inside = scores[b].permute(1, 2, 0)[assign[b] == c]
            torch.testing.assert_close(inside, inside[:1].expand_as(inside))


# -- CLIP initialisation ----------------------------------------------------------------------
def test_hf_clip_to_timm_mapping_reproduces_clips_towers() -> None:
    clip, tokenizer = load_clip("tiny")
    method = _tiny(vision_init="clip", text_init="clip").eval()
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = clip.vision_model(pixel_values=images)
        expected_global = clip.visual_projection(out.pooler_output)
        expected_patches = clip.visual_projection(
            clip.vision_model.post_layernorm(out.last_hidden_state[:, 1:])
        )
        global_, patches = method.visual(images)
        tokens = tokenizer(["a photo of a dog.", "a red circle"], padding=True, return_tensors="pt")
        expected_text = clip.text_projection(clip.text_model(**tokens).pooler_output)
        text = method.embed_text(tokens["input_ids"], tokens["attention_mask"])
    torch.testing.assert_close(global_, expected_global, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(patches.reshape(2, 196, -1), expected_patches, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(text, F.normalize(expected_text, dim=-1), atol=1e-5, rtol=1e-4)
    assert method.logit_scale.item() == pytest.approx(clip.logit_scale.item())


# -- training views, teacher, groups, settings ------------------------------------------------
def _sample(caption: str = "a red circle next to a blue square") -> ImageTextSample:
    pixels = np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    return ImageTextSample(image=Image.fromarray(pixels), caption=caption, key="0")


def test_train_transform_makes_the_views_and_tokens() -> None:
    method = _tiny(num_local=3)
    out = method.train_transform()(_sample())
    assert out["image"].shape == out["image_aug"].shape == (3, 64, 64)
    assert out["local"].shape == (3, 3, 32, 32)
    assert out["input_ids"].shape == out["attention_mask"].shape == (16,)
    assert out["flip"].dtype == torch.bool
    eos = method.tokenizer.eos_token_id
    assert out["input_ids"][int(out["attention_mask"].sum()) - 1] == eos
    with pytest.raises(SkipSample):
        method.train_transform()(_sample("   "))


def test_unflip_mirrors_only_flipped_maps() -> None:
    maps = torch.arange(12.0).reshape(2, 2, 3, 1)
    out = unflip(maps, torch.tensor([True, False]))
    assert out[0, :, :, 0].tolist() == [[2.0, 1.0, 0.0], [5.0, 4.0, 3.0]]
    assert torch.equal(out[1], maps[1])


def test_sample_boxes_reads_the_other_views_patch_centres() -> None:
    maps = torch.arange(16.0).reshape(1, 1, 4, 4)  # value = 4 * row + column at cell centres
    whole = sample_boxes(maps, torch.tensor([[0.0, 0.0, 1.0, 1.0]]), (4, 4))
    torch.testing.assert_close(whole, maps)
    # the right half, seen by a 4x2 grid: centres at columns 2 and 3 exactly
    right = sample_boxes(maps, torch.tensor([[0.5, 0.0, 1.0, 1.0]]), (4, 2))
    torch.testing.assert_close(right, maps[..., 2:])
    # the centre quarter at the same 4x4 resolution: centres fall between cells (bilinear)
    centre = sample_boxes(maps, torch.tensor([[0.25, 0.25, 0.75, 0.75]]), (4, 4))
    torch.testing.assert_close(centre[0, 0, 0, :2], torch.tensor([3.75, 4.25]))


def test_clustering_view_corresponds_to_the_global_view_through_box_and_flip() -> None:
    method = _tiny(global_size=64, cluster_scale=(0.3, 0.6))
    transform = method.train_transform()
    transform.global_recolour = torch.nn.Identity()  # keep colours, so the views are comparable
    y, x = np.mgrid[0:90, 0:120]
    smooth = np.stack([x * 2, y * 2, (x + y)], -1).clip(0, 255).astype(np.uint8)
    flips = set()
    torch.manual_seed(0)
    for _ in range(6):
        out = transform(ImageTextSample(image=Image.fromarray(smooth), caption="a ramp", key="0"))
        flips.add(bool(out["flip"]))
        aug = unflip(out["image_aug"].permute(1, 2, 0)[None], out["flip"][None])[0].permute(2, 0, 1)
        warped = sample_boxes(out["image"][None], out["box"][None], (64, 64))[0]
        assert (warped - aug)[:, 2:-2, 2:-2].abs().mean() < 0.05  # normalised units; a mismatch gives ~1
    assert flips == {True, False}


def test_ema_teacher_moves_once_per_step() -> None:
    method = _tiny(vision_teacher="ema", teacher_momentum=0.9)
    teacher = method.teacher.proj.weight
    before = teacher.clone()
    with torch.no_grad():
        method.visual.proj.weight.add_(1.0)
    method.on_train_step(0)  # nothing to follow yet
    assert torch.equal(teacher, before)
    method.on_train_step(1)
    method.on_train_step(1)  # repeated under gradient accumulation: no second move
    torch.testing.assert_close(teacher, before + 0.1)
    assert not teacher.requires_grad


def test_ema_teacher_variant_passes_the_contract() -> None:
    check_method(SPEC, {"vision_teacher": "ema", "cluster_head": "linear"})


def test_param_groups_give_the_heads_their_own_lr_and_no_decay_on_vectors() -> None:
    method = _tiny(head_lr=0.02)
    groups = method.param_groups(weight_decay=0.1)
    heads = [g for g in groups if g.get("lr") == 0.02]
    head_params = {id(p) for p in method.cluster_head.parameters()}
    assert {id(p) for g in heads for p in g["params"]} == head_params
    for group in groups:
        assert all((p.ndim >= 2) == (group["weight_decay"] == 0.1) for p in group["params"])


def test_settings_that_break_patch_correspondence_are_refused() -> None:
    with pytest.raises(ConfigError, match="multiple of the patch size"):
        _tiny(global_size=70)
    with pytest.raises(ConfigError, match="num_clusters"):
        _tiny(num_clusters=1)
