"""Batch-norm statistics: the loss of Eq. 4 against its own source, alignment, and a tower without BN."""
from __future__ import annotations

import copy

import pytest
import torch

from clipunlearn.errors import TrainingError
from clipunlearn.training.bn_stats import (
    align_to_bn_statistics,
    batch_norm_layers,
    bn_statistics_loss,
    bn_statistics_terms,
)


def _images(n: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


def test_the_loss_vanishes_when_the_stored_statistics_are_the_batch_own(mini_rn_random):
    clip = copy.deepcopy(mini_rn_random)
    x = _images()
    layers = batch_norm_layers(clip)
    assert len(layers) == 3 + 4 * 4  # stem, and 3 + downsample in each of the 4 blocks
    stored = float(bn_statistics_loss(clip, x).detach())
    # one train-mode pass with momentum 1: the running statistics become this batch's; BN stores the
    # unbiased variance, n / (n − 1) times the biased one (n = N·H·W values per channel), so undo that
    counts = {}

    def count(layer, inputs):
        counts[layer] = inputs[0].numel() // inputs[0].shape[1]

    hooks = [layer.register_forward_pre_hook(count) for layer in layers.values()]
    for layer in layers.values():
        layer.momentum = 1.0
    clip.model.train()
    with torch.no_grad():
        clip.encode_image(x)
        for layer, n in counts.items():
            layer.running_var.mul_((n - 1) / n)
    clip.model.eval()
    for h in hooks:
        h.remove()
    own = float(bn_statistics_loss(clip, x).detach())
    assert own < 1e-5 * stored and stored > 1
    assert not clip.model.training


def test_alignment_lowers_the_loss_keeps_pixels_valid_and_leaves_the_model(mini_rn_random):
    clip = copy.deepcopy(mini_rn_random)
    x = _images(3, seed=1)
    before = {k: v.clone() for k, v in clip.model.state_dict().items()}
    aligned, losses = align_to_bn_statistics(clip, x, steps=2, lr=0.05, batch_size=2)
    assert aligned.shape == x.shape and not aligned.requires_grad
    assert float(aligned.min()) >= 0 and float(aligned.max()) <= 1 and not torch.equal(aligned, x)
    assert losses["bn_loss_after"] < losses["bn_loss_before"]
    with torch.no_grad():
        expected = (2 * float(bn_statistics_loss(clip, x[:2])) + float(bn_statistics_loss(clip, x[2:]))) / 3
    assert losses["bn_loss_before"] == pytest.approx(expected, rel=1e-5)
    assert all(torch.equal(before[k], v) for k, v in clip.model.state_dict().items())  # running stats too
    assert all(p.requires_grad for p in clip.model.parameters()) and not clip.model.training


def test_the_first_layer_term_by_hand_and_gradients_reach_the_images(mini_rn_random):
    clip = copy.deepcopy(mini_rn_random)
    bn1 = clip.model.visual.bn1
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        bn1.running_mean.copy_(torch.randn(bn1.num_features, generator=gen))
        bn1.running_var.copy_(torch.rand(bn1.num_features, generator=gen) + 0.5)
    x = _images(3).requires_grad_(True)
    terms = bn_statistics_terms(clip, x)
    assert next(iter(terms)) == "bn1" and len(terms) == len(batch_norm_layers(clip))
    with torch.no_grad():
        h = clip.model.visual.conv1(clip.normalize(x))  # what enters bn1
        mean = h.mean(dim=(0, 2, 3))
        var = ((h - mean.view(1, -1, 1, 1)) ** 2).mean(dim=(0, 2, 3))
        hand = (mean - bn1.running_mean).norm() + (var - bn1.running_var).norm()
    assert float(terms["bn1"].detach()) == pytest.approx(float(hand), rel=1e-5)
    loss = bn_statistics_loss(clip, x)
    assert float(loss.detach()) == pytest.approx(sum(float(t.detach()) for t in terms.values()), rel=1e-5)
    loss.backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0


def test_a_tower_without_batch_norm_is_refused():
    from clipunlearn.models import load_clip

    vit = load_clip("mini-vit", pretrained="none")
    with pytest.raises(TrainingError, match="The image tower of mini-vit has no batch-norm layer") as e:
        align_to_bn_statistics(vit, _images(2), steps=1)
    assert "\n" not in str(e.value)
    with pytest.raises(TrainingError, match="no batch-norm layer"):
        bn_statistics_loss(vit, _images(2))
