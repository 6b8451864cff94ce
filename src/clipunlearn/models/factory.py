"""One factory, :func:`load_clip`, for every CLIP clipunlearn works on.

``model`` is an open_clip architecture name (``RN50``, ``ViT-B-16``, ...) or a mini-zoo name
(``mini-rn``, ``mini-vit``). ``pretrained`` is an open_clip tag (``openai``), a local checkpoint
file (OpenAI's JIT ``.pt``, an open_clip state dict ``.pt/.bin/.pth``, ``.safetensors``), ``zoo``
(the shipped weights of a zoo model) or ``none`` (random initialisation). ``weights`` loads a
checkpoint written by clipunlearn (or any state dict of the same architecture) on top.

Images are handled in one pixel space everywhere: float tensors in [0, 1]; the model's own
normalisation is applied inside :meth:`Clip.encode_image`.
"""
from __future__ import annotations

import logging
import os
import socket
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import open_clip
import torch
from torch import nn
from torchvision import transforms as T

from ..errors import ClipUnlearnError, WeightsError, unknown
from .catalogue import image_family
from .zoo import ZOO_MODELS, register_with_open_clip, weights_path

logger = logging.getLogger(__name__)

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
ENV_WEIGHTS = "CLIPUNLEARN_WEIGHTS"
META_ARCH = "clipunlearn_arch"
META_QUICK_GELU = "clipunlearn_quick_gelu"
META_CHANGES_OF = "clipunlearn_changes_of"  # set on a file of changed tensors: the hash of the model they go on


@dataclass
class Clip:
    """An open_clip CLIP model with its tokenizer and pixel statistics."""

    model: nn.Module
    arch: str
    source: str
    tokenizer: Any = field(repr=False)
    image_size: int = 224
    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD
    quick_gelu: bool = False
    _layout_depth: int = field(default=0, repr=False, compare=False)

    @property
    def family(self) -> str:
        return image_family(self.model)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: str | torch.device) -> Clip:
        self.model.to(device)
        return self

    @contextmanager
    def fast_conv_layout(self) -> Iterator[torch.memory_format]:
        """Within the block, a ResNet image tower keeps its convolution weights channels-last, which
        runs batched convolutions about 1.5x faster on CPU (oneDNN); values are unchanged and the
        usual layout is restored on leaving the outermost block (safetensors needs it). Yields the
        layout that inputs should use."""
        if self.family != "resnet":
            yield torch.contiguous_format
            return
        if self._layout_depth == 0:
            self.model.visual.to(memory_format=torch.channels_last)
        self._layout_depth += 1
        try:
            yield torch.channels_last
        finally:
            self._layout_depth -= 1
            if self._layout_depth == 0:
                self.model.visual.to(memory_format=torch.contiguous_format)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        return (x - mean) / std

    def encode_image(self, pixels: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Image features of ``pixels`` ([0, 1], shape N×3×H×W); raw unless ``normalize``."""
        return self.model.encode_image(self.normalize(pixels), normalize=normalize)

    def tokenize(self, prompts: list[str]) -> torch.Tensor:
        return self.tokenizer(prompts).to(self.device)

    def encode_text(self, prompts: list[str], normalize: bool = False) -> torch.Tensor:
        return self.model.encode_text(self.tokenize(prompts), normalize=normalize)

    def image_transform(self) -> T.Compose:
        """PIL image -> [0, 1] tensor at the model's input size (resize short side, centre crop)."""
        return T.Compose([
            T.Resize(self.image_size, interpolation=T.InterpolationMode.BICUBIC, antialias=True),
            T.CenterCrop(self.image_size),
            T.ToTensor(),
        ])

    def save(self, path: str | os.PathLike[str], dtype: torch.dtype | None = None,
             changed_from: dict[str, torch.Tensor] | None = None) -> int:
        """Write the weights as safetensors (atomically); returns the number of tensors written.

        By default every tensor: a checkpoint loadable by :func:`load_clip` and open_clip. With
        ``changed_from`` (the state dict the model started from) only the tensors that differ from it,
        with the hash of that state: :func:`load_clip` puts them back on that model, and refuses any
        other. ``dtype`` (e.g. ``torch.float16``) stores floating tensors in that type; they load back
        as fp32.
        """
        from safetensors.torch import save_file

        from ..io import save_with

        state = {k: v.detach().contiguous().cpu() for k, v in self.model.state_dict().items()}
        meta = {META_ARCH: self.arch, META_QUICK_GELU: str(self.quick_gelu).lower()}
        if changed_from is not None:
            meta[META_CHANGES_OF] = state_hash(changed_from)
            state = {k: v for k, v in state.items() if k not in changed_from or not torch.equal(v, changed_from[k].cpu())}
        if dtype is not None:
            state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
        save_with(path, lambda tmp: save_file(state, str(tmp), metadata=meta))
        return len(state)


def state_hash(state: dict[str, torch.Tensor]) -> str:
    """sha256 (16 hex digits) of a state dict's names, dtypes, shapes and values."""
    import hashlib

    h = hashlib.sha256()
    for k in sorted(state):
        v = state[k].detach().contiguous().cpu()
        h.update(f"{k}|{v.dtype}|{tuple(v.shape)}|".encode())
        h.update(v.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def with_changes(base: dict[str, torch.Tensor], changes: dict[str, torch.Tensor], meta: dict[str, str],
                 path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The whole state of a file of changed tensors (``META_CHANGES_OF`` in ``meta``) put on ``base``;
    a :class:`WeightsError` when ``base`` is not the model the changes were made to."""
    if state_hash(base) != meta[META_CHANGES_OF]:
        raise WeightsError(
            f"{str(path)!r} holds only the tensors a run changed, in a model other than the one loaded under it "
            f"(hash {meta[META_CHANGES_OF]}, loaded {state_hash(base)}). Load it with the --model and --pretrained "
            "the run started from (its results.json, 'settings').")
    foreign = sorted(k for k in changes if k not in base or base[k].shape != changes[k].shape)
    if foreign:
        raise WeightsError(f"{str(path)!r} has tensors the loaded model lacks or holds in another shape "
                           f"(e.g. {foreign[:3]}). Load it with the --model the run started from.")
    return {**base, **{k: v.to(base[k].dtype) for k, v in changes.items()}}


def read_weights(path: str | os.PathLike[str], base: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint; a file of changed tensors is put back on ``base`` first."""
    state, meta = read_checkpoint(path)
    return with_changes(base, state, meta, path) if META_CHANGES_OF in meta else state


class _DropRandomInitWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Model initialized randomly" not in record.getMessage()


@contextmanager
def _quiet_random_init_warning() -> Iterator[None]:
    """open_clip warns "initialized randomly" whenever it builds a model without its own weights,
    although clipunlearn loads the checkpoint right after; that warning would mislead."""
    root = logging.getLogger()
    filt = _DropRandomInitWarning()
    root.addFilter(filt)
    try:
        yield
    finally:
        root.removeFilter(filt)


def resolve_device(device: str | None) -> str:
    """'cpu' or 'cuda' (also 'cuda:N'); fails clearly when CUDA is asked for and absent."""
    device = (device or "cpu").strip().lower()
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ClipUnlearnError(f"--device {device} was asked for, but PyTorch sees no CUDA GPU here. "
                                   "Use --device cpu, or run on a machine with a GPU and a CUDA build of torch.")
        return device
    if device != "cpu":
        raise ClipUnlearnError(f"Unknown device {device!r}. Use 'cpu' or 'cuda'.")
    return device


def available_models() -> list[str]:
    register_with_open_clip()
    return list(ZOO_MODELS) + [m for m in open_clip.list_models() if m not in ZOO_MODELS]


def weights_dir() -> Path:
    return Path(os.environ.get(ENV_WEIGHTS, Path.home() / ".cache" / "clipunlearn" / "weights")).expanduser()


def _pretrained_checkpoint(model: str, pretrained: str | None) -> tuple[Path | None, bool, str]:
    """The checkpoint a resolved ``pretrained`` value names, whether its open_clip tag asks for
    QuickGELU, and the source the model reports (``random``, ``zoo``, ``open_clip:TAG`` or the path)."""
    if pretrained in (None, "none"):
        return None, False, "random"
    assert pretrained is not None
    if pretrained == "zoo":
        checkpoint = weights_path(model)
        if not checkpoint.exists():
            raise WeightsError(
                f"The zoo weights of {model} are not in the package ({checkpoint}). Reinstall clipunlearn, "
                f"or make them with `clipunlearn zoo train {model}`, or pass --pretrained none."
            )
        return checkpoint, False, "zoo"
    cfg = open_clip.get_pretrained_cfg(model, pretrained)
    if cfg:
        return _find_or_download(model, pretrained, cfg), bool(cfg.get("quick_gelu", False)), f"open_clip:{pretrained}"
    if Path(pretrained).expanduser().is_file():
        path = Path(pretrained).expanduser()
        return path, False, str(path)
    tags = open_clip.list_pretrained_tags_by_model(model)
    raise WeightsError(
        f"--pretrained {pretrained!r} is neither an open_clip tag of {model} (tags: {tags or 'none'}) "
        "nor an existing file. Pass a tag, a checkpoint path, or 'none' for random weights."
    )


def _checkpoint_quick_gelu(paths: list[Path], model: str, quick_gelu: bool) -> bool:
    """Whether the model needs QuickGELU, as the checkpoints say (their metadata; OpenAI's TorchScript
    archives always do), else ``quick_gelu``; a checkpoint of another architecture is refused."""
    for path in paths:
        _, meta = read_checkpoint(path)
        if meta.get(META_ARCH) and meta[META_ARCH] != model:
            raise WeightsError(f"{str(path)!r} holds a {meta[META_ARCH]} model, not {model}. "
                               f"Pass --model {meta[META_ARCH]}.")
        if META_QUICK_GELU in meta:
            quick_gelu = meta[META_QUICK_GELU] == "true"
        elif _is_jit(path):
            quick_gelu = True  # OpenAI's models all use QuickGELU
    return quick_gelu


def load_clip(
    model: str,
    pretrained: str | None = "default",
    weights: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
) -> Clip:
    """Build ``model`` and load its weights; see the module docstring for the accepted values."""
    register_with_open_clip()
    names = available_models()
    if model not in names:
        raise unknown("model", model, names)
    pretrained = _resolve_pretrained(model, pretrained)
    checkpoint, quick_gelu, source = _pretrained_checkpoint(model, pretrained)
    weight_file = Path(weights).expanduser() if weights else None
    if weight_file is not None and not weight_file.is_file():
        raise WeightsError(f"The weights file {str(weight_file)!r} does not exist. Pass the path of a "
                           "model.safetensors written by clipunlearn, or of a checkpoint of this architecture.")
    paths = [p for p in (checkpoint, weight_file) if p is not None]
    quick_gelu = _checkpoint_quick_gelu(paths, model, quick_gelu)
    with _quiet_random_init_warning():  # the weights are loaded below; "none" is logged by the caller's choice
        net = open_clip.create_model(model, pretrained=None, force_quick_gelu=quick_gelu, device="cpu")
    if not paths:
        logger.info("%s: random initialisation (pretrained='none')", model)
    for path in paths:
        _load_state(net, read_weights(path, net.state_dict()), model, path)
    if weight_file is not None:
        source = f"{source}+{weight_file}"
    net.eval()
    cfg = open_clip.get_pretrained_cfg(model, pretrained) if pretrained not in (None, "none", "zoo") else {}
    image_size = net.visual.image_size
    image_size = image_size[0] if isinstance(image_size, (tuple, list)) else int(image_size)
    clip = Clip(
        model=net,
        arch=model,
        source=source,
        tokenizer=open_clip.get_tokenizer(model),
        image_size=image_size,
        mean=tuple((cfg or {}).get("mean", OPENAI_MEAN)),
        std=tuple((cfg or {}).get("std", OPENAI_STD)),
        quick_gelu=quick_gelu,
    )
    image_family(net)  # fail early on towers we have no catalogue for
    return clip.to(device)


def _resolve_pretrained(model: str, pretrained: str | None) -> str | None:
    if pretrained is None:
        return None
    pretrained = str(pretrained)
    if pretrained.lower() == "none":
        return "none"
    if pretrained != "default":
        return pretrained
    if model in ZOO_MODELS:
        return "zoo"
    tags = open_clip.list_pretrained_tags_by_model(model)
    if "openai" in tags:
        return "openai"
    if tags:
        return tags[0]
    return "none"


def _is_jit(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.endswith("constants.pkl") or "/code/" in n for n in z.namelist())


def read_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a checkpoint, without unpickling arbitrary objects.

    safetensors are read as they are; OpenAI's TorchScript archives through ``torch.jit.load``; other
    files through ``torch.load(weights_only=True)``, which refuses anything but tensors and containers.
    """
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt", device="cpu") as f:
                meta = dict(f.metadata() or {})
                return {k: f.get_tensor(k) for k in f.keys()}, meta
        if _is_jit(path):
            module = torch.jit.load(str(path), map_location="cpu")
            state = {k: v for k, v in module.state_dict().items()
                     if k not in ("input_resolution", "context_length", "vocab_size")}
            return state, {}
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - every reader error means "not a usable checkpoint"
        raise WeightsError(
            f"Could not read {str(path)!r} as a checkpoint ({type(e).__name__}: {e}). Provide a .safetensors "
            "file, an OpenAI JIT .pt, or a state dict saved with torch.save (tensors only)."
        ) from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{str(path)!r} is not a state dict (a mapping of names to tensors).")
    return {k.removeprefix("module."): v for k, v in obj.items()}, {}


def _load_state(net: nn.Module, state: dict[str, torch.Tensor], model: str, path: Path) -> None:
    own = net.state_dict()
    # TorchScript archives also carry buffers that open_clip does not persist (e.g. the causal mask)
    transient = {n for n, _ in net.named_buffers()} - set(own)
    state = {k: v for k, v in state.items() if k not in transient}
    if "logit_scale" in state and state["logit_scale"].ndim != own["logit_scale"].ndim:
        state["logit_scale"] = state["logit_scale"].reshape(own["logit_scale"].shape)
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})")
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} of another shape (e.g. {k}: file {tuple(state[k].shape)}, "
                         f"{model} {tuple(own[k].shape)})")
        raise WeightsError(
            f"The checkpoint {str(path)!r} does not match the {model} architecture: {'; '.join(parts)}. "
            "Pass the --model the checkpoint was made for."
        )
    net.load_state_dict(state, strict=True)


def _find_or_download(model: str, tag: str, cfg: dict[str, Any]) -> Path:
    """The local file of an open_clip pretrained tag; downloads it only when online."""
    url = cfg.get("url") or ""
    url_name = Path(urlparse(url).path).name if url else ""
    here = weights_dir()
    candidates = [here / f"{model}-{tag}.safetensors", here / f"{model}-{tag}.pt"]
    if url_name:
        candidates += [here / url_name, Path.home() / ".cache" / "clip" / url_name]
    hf_repo = (cfg.get("hf_hub") or "").strip("/")
    if hf_repo:
        try:
            from huggingface_hub import try_to_load_from_cache

            for fname in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
                hit = try_to_load_from_cache(hf_repo, fname)
                if isinstance(hit, str):
                    candidates.append(Path(hit))
        except Exception:  # noqa: BLE001 - the cache is only one place to look
            pass
    for c in candidates:
        if c.is_file():
            return c
    where = f"{here / url_name}" if url_name else f"{here / (model + '-' + tag + '.safetensors')}"
    source = url or f"the Hugging Face repo {hf_repo}"
    if _offline(url, hf_repo):
        raise WeightsError(
            f"The {model} weights for pretrained={tag!r} are not on this machine and it is offline. "
            f"Download {source} on a connected machine and put the file at {where} "
            f"(or set {ENV_WEIGHTS} to the folder holding it), or pass --pretrained /path/to/file."
        )
    try:
        return Path(open_clip.download_pretrained(cfg, cache_dir=str(here)))
    except Exception as e:  # noqa: BLE001
        raise WeightsError(f"Downloading {model} pretrained={tag!r} failed ({e}). Download {source} "
                           f"yourself and put it at {where}.") from None


def _offline(url: str, hf_repo: str, timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("CLIPUNLEARN_OFFLINE") == "1":
        return True
    hosts = [urlparse(url).hostname] if url else []
    if hf_repo:
        hosts.append("huggingface.co")
    for host in hosts:
        if not host:
            continue
        try:
            with socket.create_connection((host, 443), timeout=timeout):
                return False
        except OSError:
            continue
    return True
