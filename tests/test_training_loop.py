"""The one training loop: selection rules, keep-or-revert, stop rules, phases, masks with weight decay."""
from __future__ import annotations

import copy

import pytest
import torch

from clipunlearn.errors import TrainingError
from clipunlearn.training import (
    KeepRule,
    Loop,
    OptimConfig,
    Stage,
    StopRule,
    Trace,
    run_loop,
)

POOL = ["visual.attnpool.c_proj.weight", "visual.attnpool.c_proj.bias", "visual.attnpool.v_proj.weight"]


def _loss(clip):
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))

    def step(stage, epoch, s):
        return clip.encode_image(x).pow(2).mean(), {"s": float(s)}

    return step


def test_mask_holds_elements_fixed_even_with_weight_decay_and_momentum(mini_rn_random):
    clip = copy.deepcopy(mini_rn_random)
    params = dict(clip.model.named_parameters())
    before = {n: params[n].detach().clone() for n in POOL}
    gen = torch.Generator().manual_seed(1)
    mask = {n: (torch.rand(params[n].shape, generator=gen) > 0.5).float() for n in POOL}
    loop = Loop(towers={"image": POOL}, optim=OptimConfig("sgd", 0.1, (0.9, 0.0), 0.0, weight_decay=0.5),
                max_epochs=3, selection="mask", mask=mask, steps_per_epoch=2)
    trace = run_loop(clip, loop, _loss(clip))
    for n in POOL:
        moved = params[n].detach() != before[n]
        assert not (moved & (mask[n] == 0)).any(), n  # held elements never move
        assert moved[mask[n] == 1].float().mean() > 0.9  # free ones do
    assert trace.changed_tensors == POOL and trace.steps[-1]["s"] == pytest.approx(0.5)


def test_revert_restores_weights_and_moves_to_next_stage_and_phase_tags(mini_rn_random):
    clip = copy.deepcopy(mini_rn_random)
    before = {k: v.clone() for k, v in clip.model.state_dict().items()}
    # a metric that never falls: every epoch is reverted, each stage tried once, the original kept
    loop = Loop(towers={"image": POOL}, optim=OptimConfig("adam", 1e-2), max_epochs=10,
                stages=[Stage(0, {"image": 1}), Stage(1, {"image": 2})], selection="top_k",
                keep=KeepRule("m", start=0.5), phase="impair")
    seen = []
    trace = run_loop(clip, loop, _loss(clip), measure=lambda: {"m": 1.0}, progress=seen.append)
    assert trace.stopped_because == "stages exhausted" and not trace.kept_any_step and trace.epochs == 2
    assert [r["stage"] for r in trace.steps[1:]] == [0, 1] and all(r["phase"] == "impair" for r in trace.steps)
    assert [len(r["selected"]) for r in trace.steps[1:]] == [1, 2] and seen == trace.steps[1:]
    assert all(torch.equal(before[k], v) for k, v in clip.model.state_dict().items())
    assert all(p.requires_grad for p in clip.model.parameters())  # unfrozen again


def test_stop_rule_and_appending_a_second_phase(mini_rn_random):
    clip = copy.deepcopy(mini_rn_random)
    values = iter([0.9, 0.4, 0.05, 0.0])
    loop = Loop(towers={"image": POOL}, optim=OptimConfig("adam", 1e-3), max_epochs=10,
                keep=KeepRule("m", start=1.0), stop=StopRule("m", 0.1))
    trace = run_loop(clip, loop, _loss(clip), measure=lambda: {"m": next(values)})
    assert trace.stopped_because == "m 0.050 <= 0.1" and trace.epochs == 2
    trace = run_loop(clip, Loop(towers={"image": POOL}, optim=OptimConfig("adam", 1e-3), max_epochs=1, phase="two"),
                     _loss(clip), trace=trace)
    assert trace.steps[-1]["phase"] == "two" and trace.stopped_because == "reached max_epochs (1)"


def test_nan_loss_restores_and_bad_settings_are_named(mini_rn_random):
    clip = copy.deepcopy(mini_rn_random)
    before = {k: v.clone() for k, v in clip.model.state_dict().items()}
    loop = Loop(towers={"image": POOL}, optim=OptimConfig("adam", 1e-3), max_epochs=2)
    with pytest.raises(TrainingError, match="loss became nan"):
        run_loop(clip, loop, lambda st, e, s: (torch.tensor(float("nan"), requires_grad=True), {}))
    assert all(torch.equal(before[k], v) for k, v in clip.model.state_dict().items())
    with pytest.raises(TrainingError, match="No tensor may train"):
        run_loop(clip, Loop(towers={"image": []}, optim=OptimConfig(), max_epochs=1), _loss(clip))
    with pytest.raises(TrainingError, match="Unknown optimiser"):
        run_loop(clip, Loop(towers={"image": POOL}, optim=OptimConfig("lion"), max_epochs=1), _loss(clip))
    assert (Trace().epochs, Trace().stage_reached) == (0, 0)  # a method that ran no epoch


def test_after_step_sees_every_optimiser_step(mini_rn_random):
    """The hook runs after each update (what an EMA of the weights needs), steps × epochs times."""
    clip = copy.deepcopy(mini_rn_random)
    w = dict(clip.model.named_parameters())[POOL[0]]
    seen: list[torch.Tensor] = []
    loop = Loop(towers={"image": POOL}, optim=OptimConfig("sgd", 0.1, (0.0, 0.0)), max_epochs=2, steps_per_epoch=3,
                after_step=lambda: seen.append(w.detach().clone()))
    run_loop(clip, loop, _loss(clip))
    assert len(seen) == 6 and torch.equal(seen[-1], w.detach())  # the last call saw the final weights
    assert not torch.equal(seen[0], seen[1])  # each call after a new update
