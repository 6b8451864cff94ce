"""Weight averaging against hand computations: EMA (Eq. 5), soups and their choice (Eq. 6), merges (A.2)."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from clipunlearn.errors import TrainingError
from clipunlearn.training import EMA, choose_soup, merge_models, soup


def _state(w: list[float], steps: int = 0) -> dict[str, torch.Tensor]:
    return {"w": torch.tensor(w), "steps": torch.tensor(steps)}


def test_ema_follows_eq_5_from_the_model_values():
    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 2.0]]))
    ema = EMA(model, beta=0.9)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[3.0, 0.0]]))
    ema.update(model)  # 0.9 · [1, 2] + 0.1 · [3, 0]
    assert torch.allclose(ema.values["weight"], torch.tensor([[1.2, 1.8]]))
    ema.update(model)  # 0.9 · [1.2, 1.8] + 0.1 · [3, 0]
    assert torch.allclose(ema.values["weight"], torch.tensor([[1.38, 1.62]]))
    ema.copy_to(model)
    assert torch.allclose(model.weight, torch.tensor([[1.38, 1.62]]))
    model.weight.data.fill_(7.0)  # the averages are copies, not views of the model
    assert torch.allclose(ema.values["weight"], torch.tensor([[1.38, 1.62]]))
    with pytest.raises(TrainingError, match="beta must be in"):
        EMA(model, beta=1.5)
    with pytest.raises(TrainingError, match="does not have"):
        EMA(model, beta=0.5, names=["bias"])


def test_soup_is_the_original_share_and_takes_other_tensors_from_the_tuned():
    original, tuned = _state([1.0, 2.0], steps=1), _state([3.0, 6.0], steps=5)
    mixed = soup(original, tuned, 0.25)  # 0.25 · original + 0.75 · tuned
    assert torch.allclose(mixed["w"], torch.tensor([2.5, 5.0])) and int(mixed["steps"]) == 5
    assert torch.equal(soup(original, tuned, 0.0)["w"], tuned["w"])
    assert torch.equal(soup(original, tuned, 1.0)["w"], original["w"])
    with pytest.raises(TrainingError, match="alpha must be in"):
        soup(original, tuned, 1.2)


def test_mismatched_state_dicts_are_one_line_errors():
    original = _state([1.0, 2.0])
    for other, message in [({"w": torch.zeros(2), "extra": torch.zeros(1)}, "1 only in the tuned"),
                           ({"w": torch.zeros(3), "steps": torch.tensor(0)}, "of another shape")]:
        with pytest.raises(TrainingError, match=message) as e:
            soup(original, other, 0.5)
        assert "\n" not in str(e.value)
    with pytest.raises(TrainingError, match="1 tensors only in the original") as e:
        merge_models(original, [_state([0.0, 0.0]), {"w": torch.zeros(2)}])
    assert "merged model 1" in str(e.value) and "\n" not in str(e.value)


def test_merge_adds_the_mean_or_the_sum_of_task_vectors():
    base = _state([1.0, 1.0], steps=3)
    a, b = _state([2.0, 1.0], steps=9), _state([1.0, 4.0], steps=9)  # task vectors [1, 0] and [0, 3]
    assert torch.allclose(merge_models(base, [a, b])["w"], torch.tensor([1.5, 2.5]))
    summed = merge_models(base, [a, b], how="sum")
    assert torch.allclose(summed["w"], torch.tensor([2.0, 4.0])) and int(summed["steps"]) == 3
    assert torch.allclose(merge_models(base, [a])["w"], a["w"])
    with pytest.raises(TrainingError, match="Unknown merge 'max'"):
        merge_models(base, [a], how="max")
    with pytest.raises(TrainingError, match="at least one model"):
        merge_models(base, [])


class _Clip:
    """What choose_soup uses of a Clip: a model and an architecture name."""

    def __init__(self, model: nn.Module):
        self.model, self.arch = model, "toy"


def test_choose_soup_keeps_the_best_and_breaks_ties_toward_the_smaller_alpha():
    model = nn.Linear(1, 1, bias=False)
    original, tuned = {"weight": torch.tensor([[1.0]])}, {"weight": torch.tensor([[0.0]])}
    clip = _Clip(model)
    # the soup's weight is alpha itself; the score peaks at 0.5 and is tied between 0.25 and 0.75
    score = {0.0: 0.1, 0.25: 0.7, 0.5: 0.9, 0.75: 0.7, 1.0: 0.2}
    best, scores = choose_soup(clip, original, tuned, [1.0, 0.75, 0.5, 0.25, 0.0],
                               lambda: score[round(float(model.weight.detach()), 2)])
    assert best == 0.5 and scores == score and float(model.weight.detach()) == pytest.approx(0.5)
    flat = {0.25: 0.7, 0.75: 0.7}
    best, _ = choose_soup(clip, original, tuned, [0.75, 0.25], lambda: flat[round(float(model.weight.detach()), 2)])
    assert best == 0.25 and float(model.weight.detach()) == pytest.approx(0.25)  # the loaded soup is the chosen one
    with pytest.raises(TrainingError, match="finite"):
        choose_soup(clip, original, tuned, [0.5], lambda: float("nan"))
    with pytest.raises(TrainingError, match="not in the toy model"):
        choose_soup(clip, {"other": torch.zeros(1)}, {"other": torch.zeros(1)}, [0.5], lambda: 1.0)
    with pytest.raises(TrainingError, match="at least one"):
        choose_soup(clip, original, tuned, [], lambda: 1.0)


def test_choose_soup_on_a_clip_state_dict_loads_the_chosen_soup(mini_rn_random):
    clip = copy.deepcopy(mini_rn_random)
    original = {k: v.clone() for k, v in clip.model.state_dict().items()}
    tuned = {k: v.clone() for k, v in original.items()}
    tuned["visual.attnpool.c_proj.weight"] += 1.0
    seen = []

    def score() -> float:
        seen.append(clip.model.visual.attnpool.c_proj.weight.detach() - original["visual.attnpool.c_proj.weight"])
        return -float(seen[-1].mean())  # prefers the most original soup

    best, scores = choose_soup(clip, original, tuned, [0.0, 0.5, 0.9], score)
    assert best == 0.9 and list(scores) == [0.0, 0.5, 0.9]
    assert [round(float(d.mean()), 4) for d in seen] == [1.0, 0.5, 0.1]  # (1 − α) of the tuning is left
    got = clip.model.state_dict()
    expected = soup(original, tuned, 0.9)
    assert all(torch.equal(got[k], expected[k]) for k in original)


def test_a_tensor_the_tuning_left_alone_stays_bit_for_bit_in_the_soup():
    """α·w + (1 − α)·w is w only on paper: in float32 it rounds some entries off, and a soup would list
    every untouched tensor as changed (larger `--save-model changed` files, a wrong count of changed
    tensors). The soup keeps such a tensor as it is; a tuned one is mixed."""
    torch.manual_seed(0)
    same, before = torch.randn(1000), torch.randn(10)
    assert not torch.equal(0.3 * same + 0.7 * same, same)  # the rounding the soup must not do
    after = before + 1.0
    out = soup({"same": same, "tuned": before}, {"same": same.clone(), "tuned": after}, 0.3)
    assert torch.equal(out["same"], same)
    assert torch.allclose(out["tuned"], 0.3 * before + 0.7 * after)
