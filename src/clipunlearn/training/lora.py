"""LoRA (Hu et al., ICLR 2022): low-rank adapters on chosen Conv2d / Linear layers, trained instead of
the layers' weights and merged into them when done (forget-remind-restore, CVPR'25 §4.1).

    W' = W + (alpha / rank) · B · A      A: rank × in (random), B: out × rank (zeros at the start)

:func:`attach_lora` puts one adapter on the module owning each named weight (``"visual.layer4.0.conv2
.weight"`` -> module ``visual.layer4.0.conv2``); :meth:`LoraAdapters.remove` takes them off again,
merging them into the plain weights or not. Afterwards the model is exactly as before apart from the
merged values: the same module types, the same ``state_dict`` keys, no trace of peft, so a saved
model loads without peft. :func:`lora_adapters` is the same as a context manager (merge on a normal
exit, discard on an exception).

Two kinds of layer get two kinds of adapter, with the same initialisation and the same merge:

* layers whose ``forward`` the model calls (every Conv2d and most Linear layers): peft's LoRA layers
  wrap them and add ``scale · B(A(dropout(x)))`` to their output;
* Linear layers whose weight their parent reads directly, never calling their ``forward``: the
  projections of a ResNet's attention pooling (``visual.attnpool.{q,k,v,c}_proj``, read by
  ``F.multi_head_attention_forward``) and the output projection of ``nn.MultiheadAttention``
  (``attn.out_proj``). A peft wrapper there would never act: its ``.weight`` is the base weight, and
  the model's output does not change at all (checked with peft 0.21 on mini-rn). These weights are
  parametrised instead (``torch.nn.utils.parametrize``), so that every read of ``.weight`` sees
  ``W + scale · B · A``; dropout cannot act on an input there, so ``dropout`` must then be 0.

A tensor that is not the weight of a Conv2d or Linear layer (a bias, a LayerNorm, an embedding, the
attention's packed ``in_proj_weight``, ...) cannot carry an adapter; :func:`lora_targets` keeps the
names that can. The adapters' random start is drawn from ``LoraSpec.seed`` (the global random state
is left as it was), so a run repeats exactly.
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from open_clip.modified_resnet import AttentionPool2d
from torch import nn
from torch.nn.utils import parametrize

from ..errors import ClipUnlearnError, TrainingError

PEFT_MISSING = "LoRA needs peft: pip install -e '.[lora]'"
ADAPTER_NAME = "default"


@dataclass
class LoraSpec:
    """The adapters' shape: ``rank`` r, the scale ``alpha / rank`` of B·A, dropout on the adapter's
    input (peft layers only) and the seed of the adapters' random start."""

    rank: int = 4
    alpha: float = 8.0
    dropout: float = 0.0
    seed: int = 0

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def check(self) -> None:
        if self.rank < 1:
            raise TrainingError(f"LoRA rank must be at least 1, got {self.rank}.")
        if not self.alpha > 0:
            raise TrainingError(f"LoRA alpha must be positive, got {self.alpha}.")
        if not 0 <= self.dropout < 1:
            raise TrainingError(f"LoRA dropout must be in [0, 1), got {self.dropout}.")


def _import_peft() -> tuple[Any, Any]:
    """peft's ``LoraConfig`` and ``LoraModel``, imported only when adapters are made (peft is slow to
    import and an optional dependency)."""
    try:
        from peft import LoraConfig
        from peft.tuners.lora import LoraModel
    except ImportError:
        raise ClipUnlearnError(PEFT_MISSING) from None
    return LoraConfig, LoraModel


def _weight_read_directly(model: nn.Module, module_name: str) -> bool:
    """Whether the parent of ``module_name`` reads its ``.weight`` without calling its ``forward``."""
    parent_name, _, _ = module_name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    return isinstance(parent, (AttentionPool2d, nn.MultiheadAttention))


def _owner(model: nn.Module, name: str) -> str | None:
    """The name of the Conv2d / Linear module whose weight ``name`` is, or None."""
    module_name, _, leaf = name.rpartition(".")
    if leaf != "weight" or not module_name:
        return None
    try:
        module = model.get_submodule(module_name)
    except AttributeError:
        return None
    return module_name if isinstance(module, (nn.Conv2d, nn.Linear)) else None


def lora_targets(model: nn.Module, names: Sequence[str]) -> list[str]:
    """The names among ``names`` that LoRA can adapt (weights of Conv2d / Linear layers), in order."""
    return [n for n in dict.fromkeys(names) if _owner(model, n) is not None]


class LowRankDelta(nn.Module):
    """A LoRA adapter as a parametrisation of a Linear weight: W -> W + scale · B · A, initialised as
    peft does (A Kaiming-uniform, B zeros)."""

    def __init__(self, out_features: int, in_features: int, rank: int, scale: float):
        super().__init__()
        self.lora_A = nn.Parameter(torch.empty(rank, in_features))
        self.lora_B = nn.Parameter(torch.zeros(out_features, rank))
        self.scale = scale
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    def delta(self) -> torch.Tensor:
        return self.scale * (self.lora_B @ self.lora_A)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + self.delta()


@dataclass
class LoraAdapters:
    """Adapters attached by :func:`attach_lora`; :meth:`remove` takes them off."""

    model: nn.Module
    params: dict[str, nn.Parameter]  # adapter parameter name (in ``model`` now) -> parameter
    owners: dict[str, str]  # adapter parameter name -> the weight it adapts
    peft_modules: list[str] = field(default_factory=list)  # wrapped by peft's LoRA layers
    parametrized: list[str] = field(default_factory=list)  # weights read directly: parametrised
    _tuner: Any = field(default=None, repr=False)
    _requires_grad: dict[str, bool] = field(default_factory=dict, repr=False)
    _order: dict[str, list[str]] = field(default_factory=dict, repr=False)  # parametrised: parameter order
    attached: bool = True

    @torch.no_grad()
    def remove(self, merge: bool) -> None:
        """Take every adapter off; ``merge``: add each adapter's W' − W to its weight first.

        Afterwards the modules, ``state_dict`` keys and ``requires_grad`` flags are as before
        :func:`attach_lora`; a second call does nothing.
        """
        if not self.attached:
            return
        if self._tuner is not None:
            if merge:
                self._tuner.merge_and_unload()
            else:
                self._tuner.unload()
            if "peft_config" in vars(self.model):  # older peft leaves its config on the model
                del self.model.peft_config
        for module_name in self.parametrized:
            module = self.model.get_submodule(module_name)
            delta = module.parametrizations.weight[0].delta()
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
            _register_after_weight(module, self._order[module_name])
            if merge:
                module.weight.add_(delta.to(module.weight.dtype))
        for n, p in self.model.named_parameters():
            p.requires_grad_(self._requires_grad.get(n, True))
        self.attached = False


def _register_after_weight(module: nn.Module, order: list[str]) -> None:
    """Put the parameters that came after ``weight`` (the bias) after it again: removing a
    parametrisation registers ``weight`` last, which would change the order of the state_dict keys."""
    for name in order[order.index("weight") + 1:]:
        value = getattr(module, name)
        delattr(module, name)
        module.register_parameter(name, value)


def _check_targets(model: nn.Module, names: Sequence[str], spec: LoraSpec) -> list[str]:
    """The owning module of each name (in order, once each); a one-line error for a name that cannot
    carry an adapter."""
    if not names:
        raise TrainingError("LoRA needs at least one layer to adapt; the list of tensors is empty.")
    if any(isinstance(m, LowRankDelta) or hasattr(m, "base_layer") for m in model.modules()):
        raise TrainingError("The model already carries LoRA adapters; remove them before attaching new ones.")
    modules: list[str] = []
    for name in dict.fromkeys(names):
        owner = _owner(model, name)
        if owner is None:
            raise TrainingError(
                f"LoRA can adapt only the weight of a Conv2d or Linear layer, and {name!r} is not one; "
                "pass such weights only (lora_targets(model, names) keeps them)."
            )
        if spec.dropout and _weight_read_directly(model, owner):
            raise TrainingError(
                f"LoRA dropout cannot act on {owner!r}: its parent reads its weight directly, so the adapter "
                "is a change of the weight, not of the input; set dropout=0 or leave that layer out."
            )
        modules.append(owner)
    return modules


def attach_lora(model: nn.Module, tensor_names: Sequence[str], spec: LoraSpec) -> LoraAdapters:
    """Attach one adapter to the module owning each of ``tensor_names`` (weights of Conv2d / Linear
    layers; see the module docstring). Only the adapters require gradients until :meth:`LoraAdapters
    .remove`; new adapter modules take the train/eval mode of the layer they adapt. If attaching
    fails half-way, what was attached is removed again."""
    spec.check()
    LoraConfig, LoraModel = _import_peft()
    modules = _check_targets(model, tensor_names, spec)
    direct = [m for m in modules if _weight_read_directly(model, m)]
    wrapped = [m for m in modules if m not in direct]
    adapters = LoraAdapters(
        model, {}, {},
        _requires_grad={n: p.requires_grad for n, p in model.named_parameters()},
        _order={m: [n for n, _ in model.get_submodule(m).named_parameters(recurse=False)] for m in direct},
    )
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(spec.seed)
            if wrapped:
                pattern = "^(" + "|".join(re.escape(m) for m in wrapped) + ")$"
                config = LoraConfig(r=spec.rank, lora_alpha=spec.alpha, lora_dropout=spec.dropout,
                                    target_modules=pattern, bias="none")
                adapters._tuner = LoraModel(model, config, ADAPTER_NAME)
                adapters.peft_modules = wrapped
            for module_name in direct:
                module = model.get_submodule(module_name)
                out_features, in_features = module.weight.shape
                delta = LowRankDelta(out_features, in_features, spec.rank, spec.scale)
                parametrize.register_parametrization(module, "weight",
                                                     delta.to(module.weight.device, module.weight.dtype))
                adapters.parametrized.append(module_name)
        for p in model.parameters():
            p.requires_grad_(False)
        for module_name in modules:
            module = model.get_submodule(module_name)
            found = {f"{module_name}.{n}": p for n, p in module.named_parameters() if "lora_" in n}
            if not found:
                raise TrainingError(f"peft attached no adapter to {module_name!r}; LoRA cannot adapt this layer.")
            for n, p in found.items():
                p.requires_grad_(True)
                adapters.params[n] = p
                adapters.owners[n] = f"{module_name}.weight"
            if module_name in wrapped:
                module.train(module.get_base_layer().training)
    except BaseException:
        adapters.remove(merge=False)
        raise
    return adapters


@contextmanager
def lora_adapters(model: nn.Module, tensor_names: Sequence[str], spec: LoraSpec) -> Iterator[dict[str, nn.Parameter]]:
    """Within the block ``model`` carries LoRA adapters on the layers owning ``tensor_names``; yields
    ``{adapter parameter name: parameter}``, the tensors to train. On a normal exit the adapters are
    merged into the plain weights, on an exception they are discarded (the weights as before); either
    way every trace of them is gone."""
    adapters = attach_lora(model, tensor_names, spec)
    try:
        yield adapters.params
    except BaseException:
        adapters.remove(merge=False)
        raise
    adapters.remove(merge=True)
