"""Zero-shot classification: classifiers from prompts, batched and cached image features, accuracies."""
from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..data import ImageSet
from ..errors import DataError
from ..io import computed_once
from ..memory import HalvingBatch
from ..models.catalogue import image_family
from ..models.factory import Clip
from ..precision import cache_tag, forward_pass
from .cache import FeatureCache, FeatureFile, Features, feature_chunks
from .features import hash_tensors, image_stages, run_stages

LOGIT_SCALE = 100.0


def zero_shot_classifier(clip: Clip, classnames: Sequence[str], templates: Sequence[str],
                         batch_size: int = 256) -> torch.Tensor:
    """One unit-norm weight per class: the mean of the normalised prompt embeddings, renormalised."""
    with torch.no_grad():
        if not templates:
            raise DataError("No prompt template given. Pass at least one template containing '{}'.")
        for t in templates:
            if "{}" not in t:
                raise DataError(f"Template {t!r} has no '{{}}' where the class name goes.")
        clip.model.eval()
        batches = HalvingBatch(batch_size, "encoding the prompts of a zero-shot classifier")
        total = None
        for template in templates:
            prompts = [template.format(c) for c in classnames]
            with forward_pass(clip.device):
                emb = torch.cat(batches.chunks(lambda a, b, p=prompts: clip.encode_text(p[a:b]).float(), len(prompts)))
            emb = F.normalize(emb, dim=-1)
            total = emb if total is None else total + emb
        weights = total
        return F.normalize(weights, dim=-1)


def image_scores(clip: Clip, images: torch.Tensor, labels: torch.Tensor, classnames: Sequence[str],
                 templates: Sequence[str], batch_size: int = 256) -> tuple[float, float]:
    """Zero-shot accuracy of ``images`` ([0, 1], N×3×H×W) against ``classnames`` and the mean
    probability of each image's label, with a classifier built from the model as it is now."""
    with torch.no_grad():
        weights = zero_shot_classifier(clip, classnames, templates)
        batches = HalvingBatch(batch_size, "encoding images")
        with forward_pass(clip.device):
            feats = torch.cat(batches.chunks(lambda a, b: clip.encode_image(images[a:b].to(clip.device)).float(),
                                             len(images)))
        feats = F.normalize(feats, dim=-1)
        p = F.softmax(LOGIT_SCALE * feats @ weights.T, dim=1)
        t = labels.to(clip.device)
        return float((p.argmax(1) == t).float().mean()), float(p.gather(1, t[:, None]).mean())


#: logits held at once by :class:`LogitRows` (16 MiB of float32). At 2**24 (64 MiB) a chunk's buffers
#: (its feature rows, their normalised copy, its logits) were large enough that peak RSS over 100k
#: cached ImageNet-shaped features rose 14 % above 10k's; at 2**22 it rose 1.5 %, as fast
#: (docs/results/eval-memory-mini-rn.md)
LOGIT_CHUNK_VALUES = 2**22


class LogitRows:
    """Zero-shot logits (100 · cosine) of image features against class weights, computed a chunk of
    rows at a time, so that N images × C classes are never held at once unless asked for."""

    def __init__(self, features: Features, weights: torch.Tensor, chunk_values: int = LOGIT_CHUNK_VALUES):
        self.features, self.weights = features, weights
        self.chunk_rows = max(1, chunk_values // max(1, len(weights)))

    def __len__(self) -> int:
        return len(self.features)

    def _logits(self, rows: torch.Tensor) -> np.ndarray:
        feats = F.normalize(rows.float().to(self.weights.device), dim=-1)
        return (LOGIT_SCALE * feats @ self.weights.T).cpu().numpy()

    def chunks(self) -> Iterator[tuple[int, np.ndarray]]:
        for start, rows in feature_chunks(self.features, self.chunk_rows):
            yield start, self._logits(rows)

    def rows(self, index: np.ndarray) -> np.ndarray:
        """The logits of the images at ``index`` (sorted integer positions)."""
        index = np.asarray(index, dtype=np.int64)
        if isinstance(self.features, FeatureFile):
            parts = [self.features.rows(int(i), int(i) + 1) for i in index]
            rows = torch.cat(parts) if parts else torch.empty((0, *self.features.shape[1:]))
        else:
            rows = self.features[torch.from_numpy(index)]
        return self._logits(rows)


@dataclass
class EvalResult:
    """The zero-shot logits of every image of one image set, and accuracies derived from them.

    ``logit_rows``: the logits as an array, or as :class:`LogitRows` computed a chunk at a time (the
    evaluator's, so that accuracies of a large set never hold all its logits)."""

    dataset: str
    classnames: list[str]
    labels: np.ndarray
    logit_rows: np.ndarray | LogitRows

    @property
    def n(self) -> int:
        return len(self.labels)

    @property
    def logits(self) -> np.ndarray:
        """Every image's logits at once (N × C floats: for sets small enough to hold)."""
        if isinstance(self.logit_rows, np.ndarray):
            return self.logit_rows
        return np.concatenate([chunk for _, chunk in self.logit_rows.chunks()]) if self.n else \
            np.zeros((0, len(self.classnames)), np.float32)

    def logits_of(self, index: np.ndarray) -> np.ndarray:
        """The logits of the images at ``index`` (integer positions)."""
        if isinstance(self.logit_rows, np.ndarray):
            return self.logit_rows[np.asarray(index, dtype=np.int64)]
        return self.logit_rows.rows(index)

    @cached_property
    def predictions(self) -> np.ndarray:
        if isinstance(self.logit_rows, np.ndarray):
            return self.logit_rows.argmax(axis=1)
        out = np.empty(self.n, dtype=np.int64)
        for start, chunk in self.logit_rows.chunks():
            out[start:start + len(chunk)] = chunk.argmax(axis=1)
        return out

    @property
    def correct(self) -> np.ndarray:
        return self.predictions == self.labels

    @property
    def top1(self) -> float:
        return float(self.correct.mean()) if self.n else float("nan")

    def accuracy(self, classes: Sequence[int] | None = None, exclude: Sequence[int] = ()) -> float:
        """Top-1 over the images whose true class is in ``classes`` (all if None) and not in ``exclude``."""
        mask = np.ones(self.n, bool) if classes is None else np.isin(self.labels, list(classes))
        if exclude:
            mask &= ~np.isin(self.labels, list(exclude))
        if not mask.any():
            return float("nan")
        return float(self.correct[mask].mean())

    def per_class(self) -> dict[str, float]:
        return {self.classnames[c]: float(self.correct[self.labels == c].mean())
                for c in range(len(self.classnames)) if (self.labels == c).any()}

    def to_json(self) -> dict:
        return {"top1": self.top1, "n": self.n, "per_class": self.per_class()}


def _precision_key() -> tuple[str, ...]:
    """What a feature or classifier key adds for the active precision: nothing for fp32 (older keys stay valid)."""
    tag = cache_tag()
    return () if tag is None else (tag,)


class _Pixels(Dataset):
    def __init__(self, images: ImageSet, transform):
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        try:
            return self.transform(self.images.load(i)), True
        except Exception:  # noqa: BLE001 - counted and reported by the caller
            return torch.zeros(3, 1, 1), False


def _collate(batch):
    ok = [b[1] for b in batch]
    good = [b[0] for b in batch if b[1]]
    return (torch.stack(good) if good else None), torch.tensor(ok)


def loader_workers() -> int:
    """Image-decoding processes beside the model: 2, or none when torch may use one thread only (a
    benchmark cell given one CPU): there, two more processes would only compete for that CPU, and
    starting them and passing them pixels cost more than decoding in place."""
    return 2 if torch.get_num_threads() > 1 else 0


class Evaluator:
    """Zero-shot evaluation of one model; reuses cached features of unchanged image-tower stages.

    On a miss, the final image features are cached, and for ResNet towers the input of the
    attention pool as well (when it takes at most ``max_cut_bytes``: 2048×7×7 floats an image on RN50
    at 224 px), so after a method changed only the pool (as Lip does on ResNets) the evaluation runs
    the pool alone. Features are streamed into the cache a batch at a time and logits are computed a
    chunk at a time, so memory does not grow with the number of images (:mod:`.cache`). Text classifiers are kept too, keyed by a hash of every tensor
    outside the image tower, the class names and the templates: a method that left the text tower
    alone gets the same classifier back without running the text tower again.
    """

    def __init__(self, clip: Clip, cache: FeatureCache | None = None, batch_size: int = 128,
                 workers: int | None = None, progress: bool = True, max_cut_bytes: int = 4 * 2**30):
        self.clip = clip
        self.cache = cache if cache is not None else FeatureCache()
        self.batch_size = batch_size
        self.max_cut_bytes = max_cut_bytes
        # the images the model takes at once: halved on out of memory, and kept halved for later calls
        self.model_batch = HalvingBatch(batch_size, "computing image features")
        self.workers = loader_workers() if workers is None else workers
        self.progress = progress
        self._classifiers: OrderedDict[str, torch.Tensor] = OrderedDict()

    def classifier(self, classnames: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
        """:func:`zero_shot_classifier`, reused while the text tower, names and templates are unchanged."""
        h = hashlib.blake2b(digest_size=20)
        h.update(repr((self.clip.arch, hash_tensors(self.clip.model, lambda name: not name.startswith("visual.")), list(classnames), list(templates))
                      + _precision_key()).encode())
        key = h.hexdigest()
        if key in self._classifiers:
            self._classifiers.move_to_end(key)
            return self._classifiers[key].to(self.clip.device)
        weights = zero_shot_classifier(self.clip, classnames, templates)
        self._classifiers[key] = weights.detach().cpu()
        while len(self._classifiers) > 32:
            self._classifiers.popitem(last=False)
        return weights

    def _cache_cuts(self) -> list[int]:
        n = len(image_stages(self.clip))
        return [n, n - 1] if image_family(self.clip.model) == "resnet" else [n]

    def _stage_hashes(self) -> list[str]:
        visual = self.clip.model.visual
        return [hash_tensors(visual, lambda name, st=st: name.startswith(st.prefixes)) for st in image_stages(self.clip)]

    def _key(self, images: ImageSet, stage_hashes: list[str], cut: int) -> str:
        h = hashlib.blake2b(digest_size=20)
        h.update(repr((images.fingerprint(), self.clip.arch, self.clip.image_size, self.clip.mean,
                       self.clip.std, cut, stage_hashes[:cut]) + _precision_key()).encode())
        return h.hexdigest()

    def image_features(self, images: ImageSet) -> torch.Tensor:
        """Unit-norm image features of every image, in order (all at once: for sets small enough to hold)."""
        with torch.no_grad():
            found = self.features(images)
            return F.normalize((found.load() if isinstance(found, FeatureFile) else found).float(), dim=-1)

    def features(self, images: ImageSet) -> Features:
        """The image tower's output for every image, in order, not normalised: the cache's entry (a
        tensor, or a file read by rows for large sets)."""
        with torch.no_grad():
            self.clip.model.eval()
            hashes = self._stage_hashes()
            n_stages = len(hashes)

            def cached(first_look: bool) -> Features | None:
                for cut in self._cache_cuts():
                    found = self.cache.get(self._key(images, hashes, cut), count_miss=first_look)
                    if found is not None:
                        if cut < n_stages:  # the stages above the cut run once, then their output is kept too
                            found = self._run_from(found, cut, self._key(images, hashes, n_stages), images)
                        return found
                return None

            whole = self._key(images, hashes, n_stages)  # cells side by side compute it once
            found, _ = computed_once(cached, lambda: self.cache.lock(whole),
                                     lambda: self._compute_features(images, hashes))
            return found

    def _run_from(self, inputs: Features, cut: int, key: str, images: ImageSet) -> Features:
        """The stages from ``cut`` on, over a cached entry, a batch at a time, into the entry ``key``."""
        chunks = feature_chunks(inputs, self.model_batch.size)
        _, first = next(chunks)
        done = self._stages_from(first, cut)
        self.cache.check_room([4 * len(inputs) * done[0].numel()], f"{images.name} ({images.split})")
        with self.cache.writer(key, len(inputs), tuple(done.shape[1:])) as out:
            out.write(done)
            for _, rows in chunks:
                out.write(self._stages_from(rows, cut))
        assert out.result is not None
        return out.result

    def _stages_from(self, rows: torch.Tensor, cut: int) -> torch.Tensor:
        with forward_pass(self.clip.device):
            return torch.cat(self.model_batch.chunks(
                lambda a, b: run_stages(self.clip, rows[a:b].to(self.clip.device), cut).float().cpu(), len(rows)))

    def _compute_features(self, images: ImageSet, hashes: list[str]) -> Features:
        with torch.no_grad():
            n_stages, n = len(hashes), len(images)
            size = self.clip.image_size
            probe = self._run_cuts(torch.zeros(1, 3, size, size), sorted(set(self._cache_cuts())))
            shapes = dict(zip(sorted(set(self._cache_cuts())), (tuple(p.shape[1:]) for p in probe)))
            # the final features always; an earlier cut only while it stays within max_cut_bytes
            cuts = [c for c in sorted(shapes) if c == n_stages or 4 * n * math.prod(shapes[c]) <= self.max_cut_bytes]
            self.cache.check_room([4 * n * math.prod(shapes[c]) for c in cuts], f"{images.name} ({images.split})")
            loader = DataLoader(_Pixels(images, self.clip.image_transform()), batch_size=self.batch_size,
                                num_workers=self.workers, collate_fn=_collate)
            bad: list[int] = []
            seen = 0
            with ExitStack() as stack:
                writers = {c: stack.enter_context(self.cache.writer(self._key(images, hashes, c), n, shapes[c]))
                           for c in cuts}
                for x, ok in tqdm(loader, desc=f"{images.name} {images.split}", disable=not self.progress,
                                  unit="batch", leave=False):
                    bad += [seen + i for i in np.flatnonzero(~ok.numpy()).tolist()]
                    seen += len(ok)
                    if x is None or bad:
                        continue
                    for part in self.model_batch.chunks(lambda a, b, x=x: self._run_cuts(x[a:b], cuts), len(x)):
                        for c, out in zip(cuts, part):
                            writers[c].write(out)
                if bad:  # the entries are dropped: nothing half-written stays in the cache
                    examples = ", ".join(images.describe(i) for i in bad[:3])
                    raise DataError(
                        f"{len(bad)} of {len(images)} images of {images.name} ({images.split}) could not be read, "
                        f"e.g. {examples}. Replace or remove them (and their manifest rows); no image is skipped silently."
                    )
            final = writers[n_stages].result
            assert final is not None
            return final

    def _run_cuts(self, x: torch.Tensor, cuts: list[int]) -> list[torch.Tensor]:
        """The output of the stages up to each cut (on the CPU) of pixels ``x``."""
        outs, start, h = [], 0, x.to(self.clip.device)
        for c in cuts:
            with forward_pass(self.clip.device):
                h = run_stages(self.clip, h, start, c)
            outs.append(h.cpu())
            start = c
        return outs

    def evaluate(self, images: ImageSet, templates: Sequence[str] | None = None,
                 classnames: Sequence[str] | None = None) -> EvalResult:
        """Zero-shot logits (100 · cosine) of ``images`` against all of its classes, computed a chunk of
        images at a time when asked for (accuracies hold one chunk of logits, not all of them)."""
        with torch.no_grad():
            classnames = list(classnames or images.classnames)
            weights = self.classifier(classnames, list(templates or images.templates))
            rows = LogitRows(self.features(images), weights)
            return EvalResult(images.name, classnames, np.asarray(images.labels), rows)
