"""Where image features live: small ones in memory, large ones in ``.npy`` files read a chunk at a time.

An entry is an N×… float32 array, one row per image. It is written a batch of rows at a time, as the
image tower produces them (:class:`FeatureWriter`), and read back a chunk of rows at a time
(:class:`FeatureFile`), so that evaluating 100,000 images holds one batch of features, never all of
them. Rows are read with ``pread`` rather than through a memory map: pages of a mapped file that were
read count towards the process's resident memory until the kernel drops them, and the point is a
resident size that does not grow with the data.

An entry goes to the cache's folder when it has one (kept across runs; written to a temporary name and
renamed when complete, so a killed run leaves no half-written entry), to a private scratch folder when
it is large and must not outlive the process (a forgotten model's features, or a cache without a
folder; the folder is in ``TMPDIR`` and removed when the cache is), and to memory otherwise. Before any work, :meth:`FeatureCache.check_room` compares what will be
written with what each disk has free.
"""
from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import weakref
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import torch

from ..errors import NotEnoughDiskError
from ..io import process_alive

log = logging.getLogger("clipunlearn")

#: entries larger than this that must not be written to the cache's folder go to a scratch folder
SPILL_BYTES = 256 * 2**20
#: entries held in memory at once, at most (the least recently used are dropped first)
MEMORY_BYTES = 1024 * 2**20
#: what a disk must keep free beyond the entries written to it
DISK_MARGIN_BYTES = 256 * 2**20

_FLOAT = np.dtype("<f4")


class FeatureFile:
    """An N×… float32 array in a ``.npy`` file, read by rows (the file stays open, so an entry evicted
    from a scratch folder can still be read by whoever holds it)."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        header = np.load(self.path, mmap_mode="r")  # reads the header only
        if header.dtype != _FLOAT or header.ndim < 1:
            raise ValueError(f"{self.path} is not a float32 feature array (dtype {header.dtype}, shape {header.shape})")
        self.shape: tuple[int, ...] = tuple(header.shape)
        self._offset = int(header.offset)
        del header
        self._row_bytes = 4 * math.prod(self.shape[1:])
        self._fd = os.open(self.path, os.O_RDONLY)
        weakref.finalize(self, os.close, self._fd)

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def nbytes(self) -> int:
        return self._row_bytes * self.shape[0]

    def rows(self, start: int, stop: int) -> torch.Tensor:
        """Rows ``start:stop`` as a new tensor."""
        start, stop = max(0, start), min(stop, len(self))
        if stop <= start:
            return torch.empty((0, *self.shape[1:]))
        size = (stop - start) * self._row_bytes
        data = bytearray(size)
        view, done = memoryview(data), 0
        while done < size:  # pread may return fewer bytes than asked
            n = os.preadv(self._fd, [view[done:]], self._offset + start * self._row_bytes + done)
            if n == 0:
                raise OSError(f"{self.path} ended before row {stop}: the feature file is truncated")
            done += n
        return torch.frombuffer(data, dtype=torch.float32).reshape(stop - start, *self.shape[1:])

    def load(self) -> torch.Tensor:
        """Every row (for sets small enough to hold)."""
        return self.rows(0, len(self))


Features = torch.Tensor | FeatureFile


def feature_chunks(features: Features, rows: int) -> Iterator[tuple[int, torch.Tensor]]:
    """``(start, rows start:start+rows)`` over an entry, a chunk at a time."""
    for start in range(0, len(features), rows):
        stop = min(start + rows, len(features))
        yield start, (features.rows(start, stop) if isinstance(features, FeatureFile) else features[start:stop])


def nbytes(features: Features) -> int:
    return features.nbytes if isinstance(features, FeatureFile) else features.numel() * features.element_size()


def _remove_orphans(path: Path) -> None:
    """Remove the partial files of ``path`` left by writers that were killed (their process is gone)."""
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        pid = tmp.name[len(path.name) + 2:-len(".tmp")]
        if pid.isdigit() and not process_alive(int(pid)):
            tmp.unlink(missing_ok=True)


class FeatureWriter:
    """Rows of one entry, written in order as they are computed; :meth:`finish` publishes it."""

    def __init__(self, n: int, item_shape: Sequence[int], path: Path | None):
        self.n, self.item_shape, self.path, self._done = n, tuple(item_shape), path, 0
        self.result: Features | None = None  # the entry, once finished
        if path is None:
            self._buffer: torch.Tensor | None = torch.empty((n, *self.item_shape))
            return
        self._buffer = None
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_orphans(path)
        self._tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        array = np.lib.format.open_memmap(self._tmp, mode="w+", dtype=_FLOAT, shape=(n, *self.item_shape))
        self._offset = int(array.offset)
        del array  # only the header was written; rows go in with pwrite, never through a mapping
        self._row_bytes = 4 * math.prod(self.item_shape)
        self._fd = os.open(self._tmp, os.O_WRONLY)

    def write(self, rows: torch.Tensor) -> None:
        rows = rows.detach().to("cpu", torch.float32).contiguous()
        if tuple(rows.shape[1:]) != self.item_shape or self._done + len(rows) > self.n:
            raise ValueError(f"rows of shape {tuple(rows.shape)} do not fit the entry {self.n}×{self.item_shape} "
                             f"after {self._done} rows")
        if self._buffer is not None:
            self._buffer[self._done:self._done + len(rows)] = rows
        else:
            data = rows.numpy().tobytes()
            written = 0
            while written < len(data):
                written += os.pwrite(self._fd, data[written:], self._offset + self._done * self._row_bytes + written)
        self._done += len(rows)

    def finish(self) -> Features:
        if self._done != self.n:
            self.abort()  # a short entry is not published, and its partial file must not stay behind
            raise ValueError(f"{self._done} of {self.n} rows were written")
        if self._buffer is not None:
            self.result = self._buffer
            return self.result
        os.fsync(self._fd)
        os.close(self._fd)
        assert self.path is not None
        os.replace(self._tmp, self.path)
        self.result = FeatureFile(self.path)
        return self.result

    def abort(self) -> None:
        if self._buffer is None:
            os.close(self._fd)
            self._tmp.unlink(missing_ok=True)


class FeatureCache:
    """Feature entries by key (images, transform, trunk hash): in memory, in ``folder`` if given (except
    within :meth:`in_memory_only`), large entries that must not go there in a scratch folder.

    ``spill_bytes``: entries above it that would be held in memory go to the scratch folder instead;
    ``memory_bytes``, ``max_items``: what the in-memory part holds at most (least recently used first out).
    """

    def __init__(self, folder: str | os.PathLike[str] | None = None, max_items: int = 64,
                 spill_bytes: int = SPILL_BYTES, memory_bytes: int = MEMORY_BYTES):
        self.folder = Path(folder).expanduser() if folder else None
        self.max_items = max_items
        self.spill_bytes = spill_bytes
        self.memory_bytes = memory_bytes
        self._mem: OrderedDict[str, Features] = OrderedDict()
        self._scratch: Path | None = None
        self.hits = 0
        self.misses = 0
        self._writes_disk = True

    @contextmanager
    def in_memory_only(self) -> Iterator[None]:
        """Within the block new entries are not written to the cache's folder (disk entries are still
        read): for the features of a model no later run starts from, e.g. a forget run's model after
        forgetting. Large ones go to the scratch folder, which is removed with the cache."""
        before, self._writes_disk = self._writes_disk, False
        try:
            yield
        finally:
            self._writes_disk = before

    def get(self, key: str, count_miss: bool = True) -> Features | None:
        """The entry of ``key``, or None (counted as a miss unless ``count_miss`` is False: a second
        look at the same entry, after waiting for another process to compute it)."""
        if key in self._mem:
            self._mem.move_to_end(key)
            self.hits += 1
            return self._mem[key]
        if self.folder is not None:
            if (self.folder / f"{key}.npy").exists():
                found: Features = FeatureFile(self.folder / f"{key}.npy")
            elif (self.folder / f"{key}.safetensors").exists():  # entries written before 0.9
                from safetensors.torch import load_file

                found = load_file(str(self.folder / f"{key}.safetensors"))["features"]
            else:
                self.misses += count_miss
                return None
            self._remember(key, found)
            self.hits += 1
            return found
        self.misses += count_miss
        return None

    def lock(self, key: str):
        """On disk, held while one process computes ``key``: others wait for it, then read it."""
        from ..io import exclusive

        return nullcontext() if self.folder is None or not self._writes_disk else exclusive(self.folder / f"{key}.lock")

    def destination(self, nbytes: int) -> Path | None:
        """The folder an entry of ``nbytes`` would be written to (None: memory)."""
        if self.folder is not None and self._writes_disk:
            return self.folder
        return self._scratch_folder() if nbytes > self.spill_bytes else None

    def check_room(self, sizes: Sequence[int], what: str) -> None:
        """Raise :class:`NotEnoughDiskError` before any work when entries of ``sizes`` bytes would not
        fit on the disks they would be written to."""
        need: dict[Path, int] = {}
        for size in sizes:
            folder = self.destination(size)
            if folder is not None:
                need[folder] = need.get(folder, 0) + size
        for folder, size in need.items():
            folder.mkdir(parents=True, exist_ok=True)
            free = shutil.disk_usage(folder).free
            if size + DISK_MARGIN_BYTES > free:
                raise NotEnoughDiskError(
                    f"The features of {what} need {size / 2**30:.1f} GiB in {folder}, but its disk has "
                    f"{free / 2**30:.1f} GiB free. Free space there, or pass --cache-dir on a larger disk "
                    f"(TMPDIR for features that are not kept).")

    def writer(self, key: str, n: int, item_shape: Sequence[int]) -> _Entry:
        """A context manager yielding a :class:`FeatureWriter` for ``key``; the entry is kept when the
        block ends without error, and nothing of it remains otherwise."""
        folder = self.destination(4 * n * math.prod(item_shape))
        return _Entry(self, key, FeatureWriter(n, item_shape, None if folder is None else folder / f"{key}.npy"))

    def put(self, key: str, value: torch.Tensor) -> Features:
        with self.writer(key, len(value), tuple(value.shape[1:])) as w:
            w.write(value)
        assert w.result is not None
        return w.result

    def _scratch_folder(self) -> Path:
        if self._scratch is None:
            self._scratch = Path(tempfile.mkdtemp(prefix="clipunlearn-features-"))  # in TMPDIR
            weakref.finalize(self, shutil.rmtree, self._scratch, True)
        return self._scratch

    def _remember(self, key: str, value: Features) -> None:
        self._mem[key] = value
        self._mem.move_to_end(key)
        while len(self._mem) > 1 and (len(self._mem) > self.max_items or self._held_bytes() > self.memory_bytes):
            _, old = self._mem.popitem(last=False)
            if isinstance(old, FeatureFile) and self._scratch is not None and old.path.parent == self._scratch:
                old.path.unlink(missing_ok=True)  # whoever still holds it reads it through its open file

    def _held_bytes(self) -> int:
        return sum(nbytes(v) for v in self._mem.values() if isinstance(v, torch.Tensor))


class _Entry:
    def __init__(self, cache: FeatureCache, key: str, writer: FeatureWriter):
        self.cache, self.key, self.writer = cache, key, writer

    def __enter__(self) -> FeatureWriter:
        return self.writer

    def __exit__(self, kind, error, tb) -> None:
        if kind is not None:
            self.writer.abort()
            return
        self.cache._remember(self.key, self.writer.finish())
