"""The one training loop of every method: a schedule of stages, one optimiser, keep-or-revert and
stop rules, seeding, and a trace of generic steps.

    for each epoch (at most ``max_epochs``):
        remember the parameters and the optimiser state (only if a step can be reverted)
        for each of ``steps_per_epoch`` steps:
            loss, metrics = the method's step(stage, epoch, step)
            backward; the selection rule picks the tensors this step updates; one optimiser step
        metrics += the method's measure() (e.g. accuracy on the forget images)
        keep the epoch, or revert it and move on to the next stage (fewer left: stop)
        stop when the stop rule says so
    if no epoch was kept: the original parameters are restored

With ``Loop.lora`` the loop trains LoRA adapters on the towers' weights instead of the weights
themselves (:mod:`.lora`): the adapters are attached first, keep-or-revert, NaN checks and the
trace work on them as on any tensor, and at the end they are merged into the weights if an epoch of
this loop was kept, discarded otherwise. The trace names the weights, not the adapters.

A method supplies the trainable tensors, the schedule and two callbacks; everything else (freezing,
the optimiser, reverting, NaN checks, stop reasons, the trace) lives here once.
"""
from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import NotEnoughMemoryError, TrainingError
from ..memory import first_line, is_out_of_memory
from ..models.factory import Clip
from ..precision import forward_pass
from .lora import LoraSpec, attach_lora
from .params import (
    Towers,
    all_names,
    apply_mask,
    restore,
    select_all,
    select_top_k,
    snapshot,
    trainable,
)

OPTIMIZERS = ("adam", "adamw", "sgd")
SELECTIONS = ("all", "top_k", "mask")


@dataclass
class Trace:
    """What a method did, step by step; written into results.json.

    ``steps[i]`` is a flat dict: ``epoch`` (0 for the state before training), ``kept`` (True, False,
    or None for the start), ``selected`` (tensor names updated, if any) and whatever metrics the
    method measured. Reports print whatever a step carries.
    """

    steps: list[dict[str, Any]] = field(default_factory=list)
    stopped_because: str = ""
    changed_tensors: list[str] = field(default_factory=list)
    kept_any_step: bool = False
    seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)  # one-off facts (e.g. retain images made)

    @property
    def epochs(self) -> int:
        return max((int(s.get("epoch", 0)) for s in self.steps), default=0)

    @property
    def stage_reached(self) -> int:
        return max((int(s["stage"]) for s in self.steps if s.get("stage") is not None), default=0)


@dataclass
class OptimConfig:
    """``adam``: Adam with coupled weight decay (as CLIP's official forgetting code); ``adamw``:
    decoupled; ``sgd``: plain SGD with ``betas[0]`` as momentum."""

    name: str = "adam"
    lr: float = 5e-5
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    weight_decay: float = 0.0

    def build(self, params: Sequence[torch.nn.Parameter]) -> torch.optim.Optimizer:
        if self.name == "adam":
            return torch.optim.Adam(params, lr=self.lr, betas=self.betas, eps=self.eps,
                                    weight_decay=self.weight_decay)
        if self.name == "adamw":
            return torch.optim.AdamW(params, lr=self.lr, betas=self.betas, eps=self.eps,
                                     weight_decay=self.weight_decay)
        if self.name == "sgd":
            return torch.optim.SGD(params, lr=self.lr, momentum=self.betas[0], weight_decay=self.weight_decay)
        raise TrainingError(f"Unknown optimiser {self.name!r}; use one of {OPTIMIZERS}.")


@dataclass
class Stage:
    """One stage of a schedule: how many tensors per tower a top-k selection keeps, and the method's
    own values for the stage (e.g. a noise level), passed back to its step function."""

    index: int = 0
    k: dict[str, int] = field(default_factory=dict)
    values: dict[str, float] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        """What a trace step records about its stage."""
        return {"stage": self.index, **{f"k_{t}": v for t, v in self.k.items()}, **self.values}


def make_stages(k: Mapping[str, Sequence[int]], caps: Mapping[str, int], **values: Sequence[float]) -> list[Stage]:
    """Stages from per-stage lists: ``k[tower][i]`` tensors of each tower (capped by ``caps[tower]``,
    the number that may train) and each named value's ``i``-th entry; every list must have one entry
    per stage."""
    lengths = {len(v) for v in (*k.values(), *values.values())}
    if len(lengths) != 1:
        named = {**{f"k_{t}": len(v) for t, v in k.items()}, **{n: len(v) for n, v in values.items()}}
        raise TrainingError(f"The schedule's lists must have one entry per stage; got lengths {named}.")
    n = lengths.pop()
    return [Stage(i, {t: min(int(v[i]), caps.get(t, 0)) for t, v in k.items()}, {name: float(v[i]) for name, v in values.items()})
            for i in range(n)]


@dataclass
class KeepRule:
    """``metric=None``: every epoch is kept. Otherwise an epoch is kept only if ``metric`` (from the
    step or measure metrics) is strictly below the best kept so far, which starts at ``start``
    (``None``: the value measured before training)."""

    metric: str | None = None
    start: float | None = None


@dataclass
class StopRule:
    """Stop after a kept epoch whose ``metric`` is at most ``at_most`` (``metric=None``: never early)."""

    metric: str | None = None
    at_most: float | None = None


@dataclass
class Loop:
    """Everything the loop needs besides the method's callbacks."""

    towers: Towers  # the tensors that may train, per tower
    optim: OptimConfig
    max_epochs: int
    stages: list[Stage] = field(default_factory=lambda: [Stage()])
    steps_per_epoch: int = 1
    selection: str = "all"  # "all" | "top_k" (uses Stage.k) | "mask" (uses ``mask``)
    mask: Mapping[str, torch.Tensor] | None = None
    keep: KeepRule = field(default_factory=KeepRule)
    stop: StopRule = field(default_factory=StopRule)
    phase: str | None = None  # a name every row of this loop carries (multi-phase methods)
    lora: LoraSpec | None = None  # train LoRA adapters on the towers' weights (needs selection "all")
    after_step: Callable[[], None] | None = None  # called after every optimiser step (e.g. an EMA update)
    batch_size: int | None = None  # images a step takes (the method's batch_size): named when memory runs out


#: step(stage, epoch, step_index) -> (loss to minimise, metrics of the step as floats)
StepFn = Callable[[Stage, int, int], tuple[torch.Tensor, dict[str, float]]]
#: measure() -> metrics of the model after an epoch (no gradients needed)
MeasureFn = Callable[[], dict[str, float]]


@dataclass
class _Trained:
    """The tensors the optimiser updates (``towers``) and the tensor each one stands for in the trace
    (``owners``; itself unless it is a LoRA adapter, which stands for the weight it adapts)."""

    towers: dict[str, list[str]]
    reported: list[str]  # the names the trace may carry, in order
    owners: dict[str, str] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return all_names(self.towers)

    def report(self, names: Iterable[str]) -> list[str]:
        """The trace's names for trained ``names``, in order, once each."""
        hit = {self.owners.get(n, n) for n in names}
        return [n for n in self.reported if n in hit]


@contextmanager
def _trained_tensors(clip: Clip, loop: Loop, trace: Trace) -> Iterator[_Trained]:
    """The towers' tensors themselves, or (``loop.lora``) LoRA adapters on them for the time of the
    block: merged into the weights if an epoch of this loop was kept, discarded otherwise or on an
    exception."""
    names = all_names(loop.towers)
    if loop.lora is None:
        yield _Trained({t: list(v) for t, v in loop.towers.items()}, names)
        return
    if loop.selection != "all":
        raise TrainingError(f"LoRA trains every adapter (selection 'all'); selection {loop.selection!r} "
                            "cannot be combined with it. Use selection='all' or set lora=None.")
    adapters = attach_lora(clip.model, names, loop.lora)
    towers = {t: [a for a, w in adapters.owners.items() if w in set(v)] for t, v in loop.towers.items()}
    since = len(trace.steps)
    try:
        yield _Trained(towers, names, adapters.owners)
    except BaseException:
        adapters.remove(merge=False)
        raise
    adapters.remove(merge=any(row.get("kept") for row in trace.steps[since:]))


def _select(clip: Clip, loop: Loop, stage: Stage, towers: Mapping[str, Sequence[str]]) -> list[str]:
    if loop.selection == "all":
        return select_all(clip.model, towers)
    if loop.selection == "top_k":
        return select_top_k(clip.model, towers, stage.k)
    if loop.selection == "mask":
        if loop.mask is None:
            raise TrainingError("selection='mask' needs a mask (name -> 0/1 tensor); none was given.")
        return apply_mask(clip.model, towers, loop.mask)
    raise TrainingError(f"Unknown selection {loop.selection!r}; use one of {SELECTIONS}.")


def _masked_values(params: Mapping[str, torch.nn.Parameter], loop: Loop) -> dict[str, torch.Tensor]:
    """Values of the masked tensors before a step, so that the elements the mask holds fixed can be
    put back after it (an optimiser's weight decay and momentum would otherwise still move them)."""
    assert loop.mask is not None
    return {n: p.detach().clone() for n, p in params.items() if n in loop.mask}


def _put_back(params: Mapping[str, torch.nn.Parameter], loop: Loop, held: dict[str, torch.Tensor]) -> None:
    assert loop.mask is not None
    with torch.no_grad():  # a block, not a decorator: mutmut skips decorated functions
        for n, old in held.items():
            p = params[n]
            keep = loop.mask[n].to(p.device).bool()
            p.copy_(torch.where(keep, p, old))


@contextmanager
def _out_of_memory_stops(model: torch.nn.Module, original: dict[str, torch.Tensor], loop: Loop,
                         epoch: int) -> Iterator[None]:
    """Within the block running out of memory stops the run: the original parameters are put back and
    a one-line error names the batch size to try (half the current one)."""
    try:
        yield
    except (RuntimeError, MemoryError) as e:
        if not is_out_of_memory(e):
            raise
        restore(model, original)
        reason = first_line(e)
        if loop.batch_size is not None and loop.batch_size > 1:
            fix = f"Try half the batch: --set batch_size={loop.batch_size // 2}, or a device with more memory."
        elif loop.batch_size == 1:
            fix = "It ran out already at one image a step: use a smaller model or a device with more memory."
        else:
            fix = ("Try fewer images a step: half the method's batch size (--set batch_size=N, where it has one) or "
                   "half the synthetic images per class (-n N), or a device with more memory.")
        where = f"{loop.phase} " if loop.phase else ""
        size = f" at {loop.batch_size} images a step" if loop.batch_size is not None else ""
        raise NotEnoughMemoryError(f"Out of memory in {where}training (epoch {epoch}{size}: {reason}); the original "
                                   f"model is kept. {fix}") from None


def _check(loop: Loop) -> None:
    """What a loop cannot run without: a tensor to train, a stage, an epoch."""
    if not all_names(loop.towers):
        raise TrainingError("No tensor may train: the method's selection of tensors is empty.")
    if not loop.stages:
        raise TrainingError("The schedule has no stage.")
    if loop.max_epochs < 1:
        raise TrainingError(f"max_epochs must be at least 1, got {loop.max_epochs}.")


@dataclass
class _Optimising:
    """What an epoch's steps update: the optimiser, the trainable parameters by name, the tensors
    trained, and the original weights (put back when the loss stops being finite)."""

    opt: torch.optim.Optimizer
    params: Mapping[str, torch.nn.Parameter]
    trained: _Trained
    original: dict[str, torch.Tensor]


def _epoch(clip: Clip, loop: Loop, step: StepFn, stage: Stage, epoch: int,
           o: _Optimising) -> tuple[set[str], dict[str, float]]:
    """One epoch's ``loop.steps_per_epoch`` steps: the tensors selected, and each metric summed over the steps."""
    selected: set[str] = set()
    sums: dict[str, float] = {}
    for s in range(loop.steps_per_epoch):
        with forward_pass(clip.device):  # bf16 autocast under --precision bf16; backward and step outside it
            loss, metrics = step(stage, epoch, s)
        loss = loss.float()
        value = float(loss.detach())
        if not math.isfinite(value):
            restore(clip.model, o.original)
            raise TrainingError(
                f"The loss became {value} at epoch {epoch}, stage {stage.index} {stage.values or ''}; "
                "the original model is kept. Lower the learning rate or the perturbation."
            )
        o.opt.zero_grad(set_to_none=True)
        loss.backward()
        selected |= set(_select(clip, loop, stage, o.trained.towers))
        held = _masked_values(o.params, loop) if loop.selection == "mask" else None
        o.opt.step()
        if held is not None:
            _put_back(o.params, loop, held)
        if loop.after_step is not None:
            loop.after_step()
        for k, v in {"loss": value, **metrics}.items():
            sums[k] = sums.get(k, 0.0) + float(v)
    return selected, sums


def run_loop(clip: Clip, loop: Loop, step: StepFn, measure: MeasureFn | None = None,
             progress: Callable[[dict], None] | None = None, trace: Trace | None = None) -> Trace:
    """Train ``loop.towers`` of ``clip`` in place; see the module docstring."""
    t0 = time.time()
    trace = trace if trace is not None else Trace()
    _check(loop)
    model = clip.model
    reverting = loop.keep.metric is not None
    with clip.fast_conv_layout(), _trained_tensors(clip, loop, trace) as trained, \
            trainable(model, trained.names) as params:
        names = trained.names
        opt = loop.optim.build(list(params.values()))
        original = snapshot(model, names)
        start = measure() if measure is not None else {}
        tag = {"phase": loop.phase} if loop.phase else {}
        trace.steps.append({"epoch": 0, **tag, **start, "kept": None})
        best = loop.keep.start if loop.keep.start is not None else start.get(loop.keep.metric or "", math.inf)
        stage_i = 0
        for epoch in range(1, loop.max_epochs + 1):
            stage = loop.stages[stage_i]
            saved = (snapshot(model, names), copy.deepcopy(opt.state_dict())) if reverting else None
            row: dict[str, Any] = {"epoch": epoch, **tag, **stage.row()}
            with _out_of_memory_stops(model, original, loop, epoch):
                selected, sums = _epoch(clip, loop, step, stage, epoch, _Optimising(opt, params, trained, original))
                row.update({k: v / loop.steps_per_epoch for k, v in sums.items()})
                if measure is not None:
                    row.update(measure())
            kept = not reverting or row[loop.keep.metric] < best  # type: ignore[index]
            row["kept"] = kept
            row["selected"] = trained.report(selected)
            trace.steps.append(row)
            if progress is not None:
                progress(row)
            if kept:
                if reverting:
                    best = row[loop.keep.metric]  # type: ignore[index]
                trace.kept_any_step = True
                trace.changed_tensors = trained.report([*selected, *trace.changed_tensors])
                goal = loop.stop
                if goal.metric is not None and goal.at_most is not None and row[goal.metric] <= goal.at_most:
                    trace.stopped_because = f"{goal.metric} {row[goal.metric]:.3f} <= {goal.at_most}"
                    break
            else:
                assert saved is not None
                restore(model, saved[0])
                opt.load_state_dict(saved[1])
                stage_i += 1
                if stage_i == len(loop.stages):
                    trace.stopped_because = "stages exhausted"
                    break
        else:
            trace.stopped_because = f"reached max_epochs ({loop.max_epochs})"
        if not trace.kept_any_step:
            restore(model, original)
            trace.changed_tensors = []
    trace.seconds += time.time() - t0
    return trace

