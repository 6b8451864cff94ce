"""The training loop's rules on a two-layer model whose every number is known (issue 35: the mutation
survivors of training/loop.py): the optimiser each name builds, the schedule, keep-or-revert at its
boundary, the stop rule at its boundary, metrics averaged over an epoch's steps, and each error's full
message. Plain SGD on a linear model: a step's update is the learning rate times a gradient worked out
by hand."""
from __future__ import annotations

import math
import time
from contextlib import contextmanager

import pytest
import torch

from clipunlearn.errors import NotEnoughMemoryError, TrainingError
from clipunlearn.precision import computing
from clipunlearn.training import KeepRule, Loop, OptimConfig, Stage, StopRule, Trace, make_stages, run_loop
from clipunlearn.training.lora import LoraSpec

W, B = "0.weight", "0.bias"


class _Tiny:
    """What the loop uses of a Clip: ``model``, ``device`` and ``fast_conv_layout()``. The model is
    y = w·x + b with w = (1, 2) and b = 0."""

    def __init__(self):
        self.model = torch.nn.Sequential(torch.nn.Linear(2, 1))
        with torch.no_grad():
            self.model[0].weight.copy_(torch.tensor([[1.0, 2.0]]))
            self.model[0].bias.zero_()
        self.device = torch.device("cpu")

    @contextmanager
    def fast_conv_layout(self):
        yield torch.contiguous_format

    def w(self):
        return self.model[0].weight.detach().flatten().tolist()


X = torch.tensor([[1.0, 1.0]])


def _step(clip, metrics=lambda stage, epoch, s: {}):
    """Loss y: its gradient is x = (1, 1) for w and 1 for b, whatever the weights."""
    def step(stage, epoch, s):
        return clip.model(X).sum(), metrics(stage, epoch, s)
    return step


def _sgd(lr=0.5):
    return OptimConfig("sgd", lr, (0.0, 0.0))


@pytest.mark.parametrize("name, cls, kwargs", [
    ("adam", torch.optim.Adam, {"lr": 0.01, "betas": (0.8, 0.9), "eps": 1e-3, "weight_decay": 0.25}),
    ("adamw", torch.optim.AdamW, {"lr": 0.01, "betas": (0.8, 0.9), "eps": 1e-3, "weight_decay": 0.25}),
    ("sgd", torch.optim.SGD, {"lr": 0.01, "momentum": 0.8, "weight_decay": 0.25}),
])
def test_each_optimiser_is_built_with_every_setting(name, cls, kwargs):
    p = torch.nn.Parameter(torch.zeros(2))
    opt = OptimConfig(name, 0.01, (0.8, 0.9), 1e-3, 0.25).build([p])
    assert type(opt) is cls
    group = opt.param_groups[0]
    assert {k: group[k] for k in kwargs} == kwargs and group["params"] == [p]


def test_the_default_optimiser_is_clips_adam():
    assert OptimConfig() == OptimConfig("adam", 5e-5, (0.9, 0.98), 1e-6, 0.0)


def test_an_unknown_optimiser_is_named_with_the_choices():
    with pytest.raises(TrainingError) as e:
        OptimConfig("lion").build([torch.nn.Parameter(torch.zeros(1))])
    assert str(e.value) == "Unknown optimiser 'lion'; use one of ('adam', 'adamw', 'sgd')."


def test_make_stages_caps_k_and_reads_each_value_as_a_float():
    stages = make_stages({"image": [1, 5, 9]}, {"image": 6}, lr=[1, 2, 3])
    assert [(s.index, s.k, s.values) for s in stages] == [
        (0, {"image": 1}, {"lr": 1.0}), (1, {"image": 5}, {"lr": 2.0}), (2, {"image": 6}, {"lr": 3.0})]
    assert all(isinstance(s.values["lr"], float) for s in stages)
    assert make_stages({"text": [3]}, {})[0].k == {"text": 0}  # a tower without a cap trains nothing
    assert stages[2].row() == {"stage": 2, "k_image": 6, "lr": 3.0}


def test_make_stages_refuses_lists_of_different_lengths():
    with pytest.raises(TrainingError) as e:
        make_stages({"image": [1, 2]}, {"image": 2}, lr=[0.1])
    assert str(e.value) == "The schedule's lists must have one entry per stage; got lengths {'k_image': 2, 'lr': 1}."


def test_trace_epochs_and_stage_reached_are_the_largest_recorded():
    trace = Trace(steps=[{"epoch": 0, "stage": None}, {"epoch": 3, "stage": 1}, {"epoch": 2, "stage": 2}, {}])
    assert (trace.epochs, trace.stage_reached) == (3, 2)


def test_sgd_steps_by_hand_and_metrics_averaged_over_an_epochs_steps():
    clip = _Tiny()
    trace = run_loop(clip, Loop(towers={"image": [W, B]}, optim=_sgd(0.5), max_epochs=2, steps_per_epoch=2,
                                stages=[Stage(3)]), _step(clip, lambda stage, epoch, s: {"s": s + 10 * epoch}))
    # four steps of w -= 0.5 · (1, 1) and b -= 0.5: w (1, 2) → (−1, 0), and y = w·x + b before each step
    # falls by 1.5: 3, 1.5 (epoch 1: mean 2.25), 0, −1.5 (epoch 2: mean −0.75)
    assert clip.w() == [-1.0, 0.0] and clip.model[0].bias.item() == -2.0
    assert [(r["epoch"], r["loss"], r["s"]) for r in trace.steps[1:]] == [(1, 2.25, 10.5), (2, -0.75, 20.5)]
    assert trace.steps[0] == {"epoch": 0, "kept": None}
    assert trace.stopped_because == "reached max_epochs (2)" and trace.kept_any_step
    assert trace.changed_tensors == [W, B] and trace.steps[1]["selected"] == [W, B]
    assert trace.steps[1]["stage"] == 3 and trace.seconds > 0


def test_an_epoch_is_kept_only_when_strictly_below_the_best_so_far():
    """The metric starts at the value measured before training (2.0): an equal value is reverted, a lower
    one kept and becomes the best, which the next epoch must beat."""
    clip = _Tiny()
    values = iter([2.0, 2.0, 1.0, 1.0, 0.5])
    loop = Loop(towers={"image": [W]}, optim=_sgd(0.5), max_epochs=4,
                stages=[Stage(0), Stage(1), Stage(2), Stage(3)], keep=KeepRule("m"))
    trace = run_loop(clip, loop, _step(clip), measure=lambda: {"m": next(values)})
    assert [r["kept"] for r in trace.steps] == [None, False, True, False, True]
    assert [r["stage"] for r in trace.steps[1:]] == [0, 1, 1, 2]  # a reverted epoch moves to the next stage
    assert clip.w() == [0.0, 1.0]  # the two kept epochs' steps only: (1, 2) − 2 · 0.5 · (1, 1)


def test_a_given_start_is_the_first_best():
    clip = _Tiny()
    loop = Loop(towers={"image": [W]}, optim=_sgd(0.5), max_epochs=1, keep=KeepRule("m", start=0.75))
    values = iter([2.0, 0.75])  # measured before training (not the first best: the start is), then epoch 1
    trace = run_loop(clip, loop, _step(clip), measure=lambda: {"m": next(values)})
    assert trace.steps[1]["kept"] is False and not trace.kept_any_step and clip.w() == [1.0, 2.0]
    assert trace.changed_tensors == [] and trace.stopped_because == "stages exhausted"


def test_the_stop_rule_stops_at_its_bound():
    clip = _Tiny()
    values = iter([1.0, 0.5, 0.25, 0.0])  # before training, then epochs 1, 2, 3
    loop = Loop(towers={"image": [W]}, optim=_sgd(0.5), max_epochs=5, stop=StopRule("m", 0.25))
    trace = run_loop(clip, loop, _step(clip), measure=lambda: {"m": next(values)})
    assert trace.stopped_because == "m 0.250 <= 0.25" and trace.epochs == 2
    # a stop rule without a bound never stops early
    trace = run_loop(_Tiny(), Loop(towers={"image": [W]}, optim=_sgd(), max_epochs=2, stop=StopRule("m", None)),
                     _step(clip), measure=lambda: {"m": 0.0})
    assert trace.stopped_because == "reached max_epochs (2)"


def test_a_reverted_epoch_restores_the_optimiser_state_too():
    """SGD with momentum 0.5: the reverted epoch's momentum must not carry into the next kept epoch."""
    clip = _Tiny()
    values = iter([1.0, 1.0, 0.5])
    loop = Loop(towers={"image": [W]}, optim=OptimConfig("sgd", 0.5, (0.5, 0.0)), max_epochs=2,
                stages=[Stage(0), Stage(1)], keep=KeepRule("m"))
    run_loop(clip, loop, _step(clip), measure=lambda: {"m": next(values)})
    assert clip.w() == [0.5, 1.5]  # one fresh step: no momentum from the reverted one (which would give 0.25)


def test_nothing_kept_restores_the_original_and_reports_no_change():
    clip = _Tiny()
    loop = Loop(towers={"image": [W, B]}, optim=_sgd(), max_epochs=3, keep=KeepRule("m", start=0.0))
    trace = run_loop(clip, loop, _step(clip), measure=lambda: {"m": 1.0})
    assert clip.w() == [1.0, 2.0] and clip.model[0].bias.item() == 0.0 and trace.changed_tensors == []


def test_a_non_finite_loss_names_the_epoch_and_stage():
    clip = _Tiny()
    loop = Loop(towers={"image": [W]}, optim=_sgd(), max_epochs=3,
                stages=[Stage(4, values={"sigma": 0.5})])
    calls = iter([1.0, math.inf, math.nan])

    def step(stage, epoch, s):
        return clip.model(X).sum() * next(calls), {}

    with pytest.raises(TrainingError) as e:
        run_loop(clip, loop, step)
    assert str(e.value) == ("The loss became inf at epoch 2, stage 4 {'sigma': 0.5}; the original model is kept. "
                            "Lower the learning rate or the perturbation.")
    assert clip.w() == [1.0, 2.0]
    with pytest.raises(TrainingError) as e:  # a stage without values
        run_loop(clip, Loop(towers={"image": [W]}, optim=_sgd(), max_epochs=1), step)
    assert str(e.value) == ("The loss became nan at epoch 1, stage 0 ; the original model is kept. Lower the "
                            "learning rate or the perturbation.")


@pytest.mark.parametrize("loop, message", [
    (Loop(towers={"image": [W]}, optim=OptimConfig(), max_epochs=1, stages=[]), "The schedule has no stage."),
    (Loop(towers={"image": [W]}, optim=OptimConfig(), max_epochs=0), "max_epochs must be at least 1, got 0."),
    (Loop(towers={"image": []}, optim=OptimConfig(), max_epochs=1),
     "No tensor may train: the method's selection of tensors is empty."),
    (Loop(towers={"image": [W]}, optim=OptimConfig(), max_epochs=1, selection="mask"),
     "selection='mask' needs a mask (name -> 0/1 tensor); none was given."),
    (Loop(towers={"image": [W]}, optim=OptimConfig(), max_epochs=1, selection="best"),
     "Unknown selection 'best'; use one of ('all', 'top_k', 'mask')."),
    (Loop(towers={"image": [W]}, optim=OptimConfig(), max_epochs=1, selection="top_k", lora=LoraSpec()),
     "LoRA trains every adapter (selection 'all'); selection 'top_k' cannot be combined with it. Use "
     "selection='all' or set lora=None."),
])
def test_each_setting_a_loop_cannot_run_with_is_named(loop, message):
    clip = _Tiny()
    with pytest.raises(TrainingError) as e:
        run_loop(clip, loop, _step(clip))
    assert str(e.value) == message
    assert clip.w() == [1.0, 2.0]


@pytest.mark.parametrize("batch, phase, message", [
    (1, None, "Out of memory in training (epoch 1 at 1 images a step: CUDA out of memory.); the original model is "
              "kept. It ran out already at one image a step: use a smaller model or a device with more memory."),
    (2, "impair", "Out of memory in impair training (epoch 1 at 2 images a step: CUDA out of memory.); the original "
                  "model is kept. Try half the batch: --set batch_size=1, or a device with more memory."),
    (None, None, "Out of memory in training (epoch 1: CUDA out of memory.); the original model is kept. Try fewer "
                 "images a step: half the method's batch size (--set batch_size=N, where it has one) or half the "
                 "synthetic images per class (-n N), or a device with more memory."),
])
def test_out_of_memory_names_the_fix_for_the_batch_size(batch, phase, message):
    clip = _Tiny()

    def step(stage, epoch, s):
        raise RuntimeError("CUDA out of memory.\nTried to allocate 2 GiB")

    with pytest.raises(NotEnoughMemoryError) as e:
        run_loop(clip, Loop(towers={"image": [W]}, optim=_sgd(), max_epochs=1, batch_size=batch, phase=phase), step)
    assert str(e.value) == message


def test_an_error_other_than_out_of_memory_passes_through():
    clip = _Tiny()

    def step(stage, epoch, s):
        raise RuntimeError("shapes do not match")

    with pytest.raises(RuntimeError, match="^shapes do not match$"):
        run_loop(clip, Loop(towers={"image": [W]}, optim=_sgd(), max_epochs=1), step)


def test_the_step_gets_its_stage_and_a_keep_rule_may_read_a_step_metric():
    """No measure: the first best is +inf, so the first epoch is kept; the step's metric is the stage's value."""
    clip = _Tiny()
    loop = Loop(towers={"image": [W]}, optim=_sgd(), max_epochs=3, keep=KeepRule("v"),
                stages=[Stage(0, values={"v": 5.0}), Stage(1, values={"v": 1.0})])
    trace = run_loop(clip, loop, _step(clip, lambda stage, epoch, s: {"v": stage.values["v"]}))
    # epoch 1 (stage 0, v 5) kept against +inf; epoch 2 (v 5 again) reverted: stage 1; epoch 3 (v 1) kept
    assert [(r["stage"], r["v"], r["kept"]) for r in trace.steps[1:]] == [(0, 5.0, True), (0, 5.0, False),
                                                                          (1, 1.0, True)]


def test_selected_is_every_tensor_a_step_of_the_epoch_updated_and_only_those():
    """Step 0 of epoch 1 reaches only the weight, step 1 only the bias: both selected. Epoch 2 reaches only the
    weight: the bias's gradient of epoch 1 must not count again (gradients are dropped, not zeroed)."""
    clip = _Tiny()
    lin = clip.model[0]

    def step(stage, epoch, s):
        if epoch == 1 and s == 1:
            return lin.bias.sum(), {}
        return (lin.weight @ X.T).sum(), {}

    trace = run_loop(clip, Loop(towers={"image": [W, B]}, optim=_sgd(), max_epochs=2, steps_per_epoch=2), step)
    assert [r["selected"] for r in trace.steps[1:]] == [[W, B], [W]]


def test_a_trace_passed_in_is_extended_and_its_seconds_accumulate():
    clip = _Tiny()
    trace = Trace(steps=[{"epoch": 0, "kept": None, "phase": "one"}], seconds=100.0)
    t0 = time.time()
    out = run_loop(clip, Loop(towers={"image": [W]}, optim=_sgd(), max_epochs=1, phase="two"), _step(clip),
                   trace=trace)
    took = time.time() - t0
    assert out is trace and [r.get("phase") for r in trace.steps] == ["one", "two", "two"]
    assert 100.0 <= trace.seconds <= 100.0 + took


def test_lora_adapters_are_reported_as_their_weight_and_merged_only_when_kept():
    clip = _Tiny()
    loop = Loop(towers={"image": [W]}, optim=_sgd(), max_epochs=1, lora=LoraSpec(rank=1))
    trace = run_loop(clip, loop, _step(clip))
    assert trace.changed_tensors == [W] and trace.steps[1]["selected"] == [W]
    assert clip.w() != [1.0, 2.0]  # merged into the weight
    assert [n for n, _ in clip.model.named_parameters()] == [W, B]  # the adapters are gone
    clip = _Tiny()
    loop = Loop(towers={"image": [W]}, optim=_sgd(), max_epochs=1, lora=LoraSpec(rank=1), keep=KeepRule("m", 0.0))
    trace = run_loop(clip, loop, _step(clip), measure=lambda: {"m": 1.0})
    assert clip.w() == [1.0, 2.0] and trace.changed_tensors == []  # reverted: discarded
    assert [n for n, _ in clip.model.named_parameters()] == [W, B]


def test_the_steps_run_under_the_active_precision():
    clip = _Tiny()
    with computing("bf16", "cpu"):
        trace = run_loop(clip, Loop(towers={"image": [W]}, optim=_sgd(), max_epochs=1), _step(clip))
    assert trace.steps[1]["loss"] == 3.0  # 1 + 2, exact in bfloat16
