"""training.adversary: the scatter loss, the first-order simulated relearning attack and the name eraser,
each against a computation that does not go through the code under test, on a tiny linear 'image tower'."""
from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from clipunlearn.errors import TrainingError
from clipunlearn.evaluation.zeroshot import LOGIT_SCALE
from clipunlearn.training.adversary import SimulatedRelearning, scatter_loss


class TinyClip(SimpleNamespace):
    """A linear map from 4 'pixels' to a 3-d feature, as much of a Clip as the adversary uses."""

    def encode_image(self, x, normalize=True):
        f = self.model(x)
        return F.normalize(f, dim=-1) if normalize else f


def _tiny(seed=0):
    torch.manual_seed(seed)
    return TinyClip(model=torch.nn.Linear(4, 3, bias=False))


def test_scatter_loss_by_hand():
    clip = _tiny()
    x = torch.randn(3, 4)
    text = F.normalize(torch.randn(2, 3), dim=-1)
    y = torch.tensor([0, 0, 0])
    loss, parts = scatter_loss(clip, x, y, text, spread=0.5)
    f = F.normalize(x @ clip.model.weight.T, dim=-1)
    p = F.softmax(LOGIT_SCALE * f @ text.T, dim=1)[:, 0]
    pairs = [float(f[i] @ f[j]) for i in range(3) for j in range(3) if i != j]
    expected = float(-torch.log(1 - p).mean()) + 0.5 * sum(pairs) / len(pairs)
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert parts["forget_prob"] == pytest.approx(float(p.mean()), rel=1e-5)


def test_scatter_loss_under_several_templates_averages_the_class_term_over_them():
    clip = _tiny(1)
    x = torch.randn(4, 4)
    texts = F.normalize(torch.randn(3, 2, 3), dim=-1)  # 3 templates' weights of 2 classes
    y = torch.tensor([0, 1, 0, 1])
    loss, parts = scatter_loss(clip, x, y, texts, spread=0.0)
    f = F.normalize(x @ clip.model.weight.T, dim=-1)
    away, probs = [], []
    for t in texts:  # each template by hand
        p = F.softmax(LOGIT_SCALE * f @ t.T, dim=1)[torch.arange(4), y]
        away.append(float(-torch.log(1 - p.clamp(max=1 - 1e-6)).mean()))  # the loss bounds p below 1
        probs.append(float(p.mean()))
    assert float(loss) == pytest.approx(sum(away) / 3, rel=1e-5)
    assert parts["forget_prob"] == pytest.approx(sum(probs) / 3, rel=1e-5)
    one = scatter_loss(clip, x, y, texts[1], spread=0.0)[0]  # one template, as C×D or as 1×C×D
    assert float(one) == pytest.approx(away[1], rel=1e-5)
    assert float(scatter_loss(clip, x, y, texts[1:2], spread=0.0)[0]) == pytest.approx(away[1], rel=1e-5)


def test_simulated_relearning_puts_the_weights_back_and_returns_the_post_attack_gradient():
    clip = _tiny()
    x, y = torch.randn(6, 4), torch.zeros(6, dtype=torch.long)
    text = F.normalize(torch.randn(2, 3), dim=-1)
    before = clip.model.weight.detach().clone()
    attack = SimulatedRelearning(steps=2, lr=0.05, images=6)

    def after():
        return scatter_loss(clip, x, y, text)[0]

    term, info = attack.surrogate(clip, x, y, text, after, torch.Generator().manual_seed(0))
    assert torch.equal(clip.model.weight, before)  # the attack's steps are undone
    assert float(term) == 0.0  # its value adds nothing to the logged loss
    term.backward()
    # independently: two Adam steps of the cross-entropy toward class 0 on a copy, then the gradient there
    ref = copy.deepcopy(clip.model)
    opt = torch.optim.Adam(ref.parameters(), lr=0.05)
    for _ in range(2):
        loss = F.cross_entropy(LOGIT_SCALE * F.normalize(ref(x), dim=-1) @ text.T, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    post = scatter_loss(TinyClip(model=ref), x, y, text)[0]
    (grad,) = torch.autograd.grad(post, [ref.weight])
    assert torch.allclose(clip.model.weight.grad, grad, atol=1e-6)
    assert info["after_attack"] == pytest.approx(float(post), rel=1e-5)
    assert not torch.equal(ref.weight, before)


@pytest.mark.parametrize("kw", [dict(steps=0, lr=1e-5, images=5), dict(steps=1, lr=0.0, images=5),
                                dict(steps=1, lr=1e-5, images=0)])
def test_simulated_relearning_refuses_bad_settings(kw):
    with pytest.raises(TrainingError):
        SimulatedRelearning(**kw)


# --- training.names: the text side ----------------------------------------------------------------

def test_reset_name_tokens_redraws_only_the_pieces_no_kept_name_uses(mini_rn_random):
    from clipunlearn.training.names import _pieces, reset_name_tokens

    clip = copy.deepcopy(mini_rn_random)
    before = clip.model.token_embedding.weight.detach().clone()
    ids = reset_name_tokens(clip, ["tree mallow"], ["tree", "yellow"], torch.Generator().manual_seed(0))
    tree = _pieces(clip, ["tree"])
    assert ids and not set(ids) & tree  # "tree" is kept: only the name's other pieces are redrawn
    assert set(ids) == _pieces(clip, ["tree mallow"]) - _pieces(clip, ["tree", "yellow"])
    after = clip.model.token_embedding.weight.detach()
    changed = sorted(int(i) for i in torch.nonzero((after != before).any(1)).flatten())
    assert changed == ids
    again = copy.deepcopy(mini_rn_random)
    reset_name_tokens(again, ["tree mallow"], ["tree", "yellow"], torch.Generator().manual_seed(0))
    assert torch.equal(again.model.token_embedding.weight, after)  # seeded
    assert reset_name_tokens(copy.deepcopy(mini_rn_random), ["tree"], ["tree"], torch.Generator()) == []


def test_generic_images_are_seeded_images_in_range():
    from clipunlearn.training.names import generic_images

    a = generic_images(4, 32, torch.Generator().manual_seed(1))
    assert a.shape == (4, 3, 32, 32) and float(a.min()) >= 0 and float(a.max()) <= 1
    assert torch.equal(a, generic_images(4, 32, torch.Generator().manual_seed(1)))


def test_the_name_eraser_aims_at_the_least_found_unknown_word(mini_rn_random):
    from clipunlearn.training.names import NameEraser, generic_images

    clip = mini_rn_random
    noise = generic_images(8, clip.image_size, torch.Generator().manual_seed(2))
    eraser = NameEraser(clip, ["minaret"], ["car", "tree"], "a photo of a {}.", torch.Generator().manual_seed(0), noise,
                        candidates=5)
    # independently: the same five seeded words, scored by their mean cosine with the noise images' features
    gen = torch.Generator().manual_seed(0)
    words = ["".join("abcdefghijklmnopqrstuvwxyz"[int(i)] for i in torch.randint(0, 26, (7,), generator=gen))
             for _ in range(5)]
    with torch.no_grad():
        f = clip.encode_image(noise, normalize=True)
        t = F.normalize(clip.model.encode_text(clip.tokenize([f"a photo of a {w}." for w in words])), dim=-1)
    assert eraser.words["minaret"] == words[int((f @ t.T).mean(0).argmin())]
    moved, kept = eraser.losses(clip)
    assert float(kept) == pytest.approx(0.0, abs=1e-6)  # nothing has trained yet: every kept name is in place
    assert 0 < float(moved) <= 2
