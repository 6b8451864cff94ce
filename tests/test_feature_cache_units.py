"""The feature cache (``evaluation/cache.py``) on hand-made entries whose every value is known (issue 35): rows read
by ranges equal the rows written, their dtype and shape, the in-memory bound and which entry leaves, hits and
misses, entries kept out of the cache's folder, a writer that stops leaving nothing half-written, the partial
files of dead writers, the room checks' whole messages and the lock's path.

No model is loaded: every entry is a few rows of ``arange``, and the disk, the system calls that may do part of
their work and the other processes are stand-ins where a test needs them. Each test takes milliseconds. The cache
under a real evaluation is in test_feature_store.py."""
from __future__ import annotations

import gc
import os
import shutil
import sys
import tempfile
from collections import namedtuple
from contextlib import nullcontext

import numpy as np
import pytest
import torch

import clipunlearn.io
from clipunlearn.errors import NotEnoughDiskError
from clipunlearn.evaluation import cache as cache_module
from clipunlearn.evaluation.cache import (
    DISK_MARGIN_BYTES,
    MEMORY_BYTES,
    SPILL_BYTES,
    FeatureCache,
    FeatureFile,
    FeatureWriter,
    feature_chunks,
    nbytes,
)

# ----------------------------------------------------------------------------------------------- helpers


def _values(n: int, *item: int) -> torch.Tensor:
    """Rows whose every entry is its own index (0, 1, 2...), as float32: any row offset shows."""
    return torch.arange(float(n * int(np.prod(item, dtype=np.int64)))).reshape(n, *item)


def _saved(path, array: np.ndarray) -> FeatureFile:
    np.save(path, array)
    return FeatureFile(path)


def _fd_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def _tmp_name(key: str) -> str:
    return f".{key}.npy.{os.getpid()}.tmp"


# ----------------------------------------------------------------------------------------------- FeatureFile


def test_rows_read_by_ranges_are_the_rows_written_with_their_dtype_and_shape(tmp_path):
    values = _values(7, 2, 3)
    f = _saved(tmp_path / "e.npy", values.numpy())
    assert f.shape == (7, 2, 3) and len(f) == 7 and f.nbytes == 7 * 2 * 3 * 4
    for start, stop in [(0, 7), (3, 5), (6, 7), (1, 2), (4, 7)]:
        got = f.rows(start, stop)
        assert got.dtype == torch.float32 and got.shape == (stop - start, 2, 3)
        assert torch.equal(got, values[start:stop])
    assert torch.equal(f.load(), values)


def test_ranges_past_either_end_are_cut_to_the_rows_there_are(tmp_path):
    values = _values(5, 3)
    f = _saved(tmp_path / "e.npy", values.numpy())
    assert torch.equal(f.rows(-3, 2), values[0:2])
    assert torch.equal(f.rows(3, 99), values[3:5])
    assert torch.equal(f.rows(0, 5), values) and torch.equal(f.rows(0, 6), values)
    for start, stop in [(2, 2), (4, 1), (5, 9), (9, 12)]:
        empty = f.rows(start, stop)
        assert empty.shape == (0, 3) and empty.dtype == torch.float32


def test_a_one_dimensional_entry_has_one_number_a_row(tmp_path):
    f = _saved(tmp_path / "e.npy", np.arange(6, dtype="<f4"))
    assert f.shape == (6,) and f.nbytes == 24 and f.rows(2, 4).tolist() == [2.0, 3.0]


def test_a_file_that_is_not_little_endian_float32_rows_is_refused_with_its_dtype_and_shape(tmp_path):
    for name, array, dtype in [("f8", np.zeros((2, 3)), "float64"), ("be", np.zeros((2, 3), ">f4"), ">f4"),
                               ("i4", np.zeros((2, 3), np.int32), "int32")]:
        with pytest.raises(ValueError) as e:
            _saved(tmp_path / f"{name}.npy", array)
        assert str(e.value) == (f"{tmp_path / f'{name}.npy'} is not a float32 feature array "
                                f"(dtype {dtype}, shape (2, 3))")
    with pytest.raises(ValueError) as e:
        _saved(tmp_path / "s.npy", np.array(1.0, "<f4"))
    assert str(e.value) == f"{tmp_path / 's.npy'} is not a float32 feature array (dtype float32, shape ())"


def test_rows_are_read_whole_when_each_read_returns_only_some_bytes(tmp_path, monkeypatch):
    values = _values(6, 5)
    f = _saved(tmp_path / "e.npy", values.numpy())
    real, calls = os.preadv, []

    def short(fd, buffers, offset):  # one byte a call: the most a read may fall short
        calls.append(offset)
        assert len(calls) < 1000, "the reader does not advance"
        return real(fd, [buffers[0][:1]], offset)

    monkeypatch.setattr(os, "preadv", short)
    assert torch.equal(f.rows(2, 4), values[2:4])
    assert calls == [f._offset + 2 * 20 + i for i in range(40)]


def test_a_file_cut_short_after_it_was_opened_says_so(tmp_path):
    f = _saved(tmp_path / "e.npy", _values(4, 2).numpy())
    size = os.path.getsize(tmp_path / "e.npy")
    os.truncate(tmp_path / "e.npy", size - 8)  # the last row gone
    assert torch.equal(f.rows(0, 3), _values(4, 2)[:3])
    with pytest.raises(OSError) as e:
        f.rows(2, 4)
    assert str(e.value) == f"{tmp_path / 'e.npy'} ended before row 4: the feature file is truncated"


def test_a_feature_files_descriptor_is_closed_when_it_is_dropped(tmp_path):
    f = _saved(tmp_path / "e.npy", _values(2, 2).numpy())
    fd = f._fd
    assert _fd_open(fd)
    del f
    gc.collect()
    assert not _fd_open(fd)


# ----------------------------------------------------------------------------------------------- chunks, sizes


def test_chunks_cover_every_row_once_in_order_from_a_tensor_or_a_file(tmp_path):
    values = _values(7, 2)
    for features in (values, _saved(tmp_path / "e.npy", values.numpy())):
        chunks = list(feature_chunks(features, 3))
        assert [s for s, _ in chunks] == [0, 3, 6]
        assert [c.tolist() for _, c in chunks] == [values[0:3].tolist(), values[3:6].tolist(), values[6:7].tolist()]
    assert [s for s, _ in feature_chunks(values, 7)] == [0] and list(feature_chunks(values[:0], 3)) == []


def test_an_entrys_size_is_its_bytes_in_memory_or_on_disk(tmp_path):
    assert nbytes(torch.zeros(5, 3)) == 60 and nbytes(torch.zeros(5, 3, dtype=torch.float64)) == 120
    assert nbytes(_saved(tmp_path / "e.npy", np.zeros((5, 3), "<f4"))) == 60


# ----------------------------------------------------------------------------------------------- the writer


def test_a_writer_on_disk_publishes_the_rows_of_every_batch_only_when_finished(tmp_path):
    values = _values(7, 2, 3)
    path = tmp_path / "new" / "deeper" / "k.npy"  # folders made as needed
    w = FeatureWriter(7, [2, 3], path)
    assert w.result is None and w.item_shape == (2, 3)
    for start, stop in [(0, 3), (3, 4), (4, 7)]:
        w.write(values[start:stop].double())  # any dtype: written as float32
        assert not path.exists() and (path.parent / _tmp_name("k")).is_file()
    got = w.finish()
    assert w.result is got and isinstance(got, FeatureFile) and got.path == path
    assert torch.equal(got.load(), values) and np.load(path).dtype == np.dtype("<f4")
    assert [p.name for p in path.parent.iterdir()] == ["k.npy"]
    FeatureWriter(1, (2, 3), tmp_path / "new" / "deeper" / "other.npy").abort()  # the folder exists: fine


def test_a_writer_in_memory_gives_the_rows_of_every_batch_as_float32(tmp_path):
    values = _values(5, 2)
    w = FeatureWriter(5, (2,), None)
    w.write(values[:2].to(torch.float16))
    w.write(values[2:])
    got = w.finish()
    assert w.result is got and got.dtype == torch.float32 and torch.equal(got, values)
    w.abort()  # nothing to remove
    assert list(tmp_path.iterdir()) == []


def test_rows_are_written_whole_when_each_write_takes_only_some_bytes(tmp_path, monkeypatch):
    values = _values(4, 3)
    real, sizes = os.pwrite, []

    def short(fd, data, offset):  # at most 5 bytes a call
        assert len(data) > 0, "asked to write nothing"
        sizes.append(len(data))
        return real(fd, data[:5], offset)

    monkeypatch.setattr(os, "pwrite", short)
    w = FeatureWriter(4, (3,), tmp_path / "k.npy")
    w.write(values[:1])
    w.write(values[1:])
    monkeypatch.undo()
    assert torch.equal(w.finish().load(), values)
    assert sizes == [12, 7, 2] + [36 - 5 * i for i in range(8)]


@pytest.mark.parametrize("where", ["disk", "memory"])
def test_rows_that_do_not_fit_the_entry_are_refused_with_the_whole_message(tmp_path, where):
    w = FeatureWriter(4, (2,), tmp_path / "k.npy" if where == "disk" else None)
    with pytest.raises(ValueError) as e:
        w.write(torch.zeros(2, 3))
    assert str(e.value) == "rows of shape (2, 3) do not fit the entry 4×(2,) after 0 rows"
    with pytest.raises(ValueError) as e:
        w.write(torch.zeros(2, 2, 1))
    assert str(e.value) == "rows of shape (2, 2, 1) do not fit the entry 4×(2,) after 0 rows"
    w.write(torch.ones(3, 2))
    with pytest.raises(ValueError) as e:
        w.write(torch.zeros(2, 2))
    assert str(e.value) == "rows of shape (2, 2) do not fit the entry 4×(2,) after 3 rows"
    w.write(torch.full((1, 2), 2.0))  # the last row fits exactly
    got = w.finish()
    assert torch.equal(got if where == "memory" else got.load(), torch.tensor([[1.0, 1], [1, 1], [1, 1], [2, 2]]))


def test_a_short_entry_is_refused_and_leaves_nothing_on_disk(tmp_path):
    w = FeatureWriter(10, (2,), tmp_path / "k.npy")
    w.write(torch.ones(4, 2))
    fd = w._fd
    with pytest.raises(ValueError) as e:
        w.finish()
    assert str(e.value) == "4 of 10 rows were written"
    assert list(tmp_path.iterdir()) == [] and not _fd_open(fd) and w.result is None


def test_an_aborted_writer_removes_its_partial_file_and_closes_it(tmp_path):
    w = FeatureWriter(3, (2,), tmp_path / "k.npy")
    w.write(torch.ones(1, 2))
    fd = w._fd
    w.abort()
    assert list(tmp_path.iterdir()) == [] and not _fd_open(fd)
    w = FeatureWriter(3, (2,), tmp_path / "k.npy")
    (tmp_path / _tmp_name("k")).unlink()  # removed by someone else meanwhile
    w.abort()
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------------------------- orphans


def test_partial_files_of_dead_writers_of_the_same_entry_are_removed_and_the_others_kept(tmp_path, monkeypatch):
    asked = []

    def alive(pid):
        asked.append(pid)
        return pid == 4242

    monkeypatch.setattr(cache_module, "process_alive", alive)
    names = [".k.npy.1234.tmp", ".k.npy.4242.tmp", ".k.npy.12x.tmp", ".other.npy.1234.tmp", "k.npy.1234.tmp",
             ".k.npy.1234.part"]
    for name in names:
        (tmp_path / name).write_bytes(b"half")
    w = FeatureWriter(1, (2,), tmp_path / "k.npy")
    assert sorted(asked) == [1234, 4242]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(set(names) - {".k.npy.1234.tmp"} | {_tmp_name("k")})
    w.abort()


def test_a_partial_file_removed_by_another_cleaner_meanwhile_is_no_error(tmp_path, monkeypatch):
    orphan = tmp_path / ".k.npy.1234.tmp"
    orphan.write_bytes(b"half")

    def gone(pid):  # another writer of the same entry removes it first
        orphan.unlink()
        return False

    monkeypatch.setattr(cache_module, "process_alive", gone)
    FeatureWriter(1, (2,), tmp_path / "k.npy").abort()
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------------------------- the cache


def test_a_cache_is_made_with_the_documented_bounds_and_its_folder_read_from_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    c = FeatureCache("~/feats")
    assert c.folder == tmp_path / "feats" and (c.hits, c.misses) == (0, 0)
    assert (c.max_items, c.spill_bytes, c.memory_bytes) == (64, SPILL_BYTES, MEMORY_BYTES)
    assert FeatureCache().folder is None and FeatureCache("").folder is None


def test_the_memory_holds_max_items_entries_and_the_least_recently_used_leaves(tmp_path):
    c = FeatureCache(max_items=3)
    for k in "abc":
        c.put(k, torch.full((1, 2), float(ord(k))))
    assert c.get("a") is not None  # a is now the most recent: b leaves next
    c.put("d", torch.zeros(1, 2))
    assert list(c._mem) == ["c", "a", "d"]
    c.put("c", torch.ones(1, 2))  # put again: the newest, with its new rows
    c.put("e", torch.zeros(1, 2))
    assert list(c._mem) == ["d", "c", "e"] and torch.equal(c.get("c"), torch.ones(1, 2))


def test_the_default_memory_holds_64_entries(tmp_path):
    c = FeatureCache()
    for i in range(65):
        c.put(str(i), torch.zeros(1, 1))
    assert list(c._mem) == [str(i) for i in range(1, 65)]


def test_the_memory_holds_tensors_up_to_memory_bytes_and_one_entry_whatever_its_size(tmp_path):
    c = FeatureCache(tmp_path / "c", memory_bytes=80, max_items=10)
    with c.in_memory_only():
        c.put("a", torch.zeros(5, 2))  # 40 bytes
        c.put("b", torch.zeros(5, 2))  # 80 in all: both held
        assert list(c._mem) == ["a", "b"]
        c.put("c", torch.zeros(1, 1))  # 84: a leaves
        assert list(c._mem) == ["b", "c"]
        c.put("big", torch.zeros(30, 1))  # 120 alone: held alone
        assert list(c._mem) == ["big"]
    files = FeatureCache(tmp_path / "c", memory_bytes=80, max_items=10)
    for k in "xyz":  # entries read from files are not held in memory: they do not count
        files.put(k, torch.zeros(30, 1))
    assert list(files._mem) == ["x", "y", "z"]


def test_hits_and_misses_are_counted_and_a_second_look_is_not_a_miss(tmp_path):
    c = FeatureCache(max_items=2)
    assert c.get("a") is None and (c.hits, c.misses) == (0, 1)
    assert c.get("a", count_miss=False) is None and (c.hits, c.misses) == (0, 1)
    assert c.get("a") is None and (c.hits, c.misses) == (0, 2)
    c.put("a", torch.ones(2, 2))  # a put is neither
    assert (c.hits, c.misses) == (0, 2)
    assert torch.equal(c.get("a"), torch.ones(2, 2)) and torch.equal(c.get("a", count_miss=False), torch.ones(2, 2))
    assert (c.hits, c.misses) == (2, 2)


def test_entries_in_the_folder_are_read_once_counted_as_hits_and_kept_there(tmp_path):
    writer = FeatureCache(tmp_path / "c")
    writer.put("k", _values(3, 2))
    assert [p.name for p in (tmp_path / "c").iterdir()] == ["k.npy"]
    c = FeatureCache(tmp_path / "c", max_items=1)
    assert c.get("none") is None and c.get("none", count_miss=False) is None and (c.hits, c.misses) == (0, 1)
    got = c.get("k")
    assert isinstance(got, FeatureFile) and torch.equal(got.load(), _values(3, 2)) and (c.hits, c.misses) == (1, 1)
    assert c.get("k") is got and (c.hits, c.misses) == (2, 1)  # remembered: the same file, not opened again
    c.put("other", torch.zeros(1, 2))  # k leaves memory but stays in the folder
    assert (tmp_path / "c" / "k.npy").is_file() and torch.equal(c.get("k").load(), _values(3, 2))
    assert (c.hits, c.misses) == (3, 1)  # read from the folder again: a hit


def test_entries_written_before_npy_are_read_as_hits_and_remembered(tmp_path):
    from safetensors.torch import save_file

    (tmp_path / "c").mkdir()
    save_file({"features": _values(3, 2)}, str(tmp_path / "c" / "old.safetensors"))
    c = FeatureCache(tmp_path / "c")
    assert torch.equal(c.get("old"), _values(3, 2)) and (c.hits, c.misses) == (1, 0)
    (tmp_path / "c" / "old.safetensors").unlink()
    assert torch.equal(c.get("old"), _values(3, 2)) and (c.hits, c.misses) == (2, 0)


def test_puts_go_to_the_folder_memory_or_scratch_by_where_and_size(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    disk = FeatureCache(tmp_path / "c", spill_bytes=40)
    kept = disk.put("small", _values(1, 2))
    assert isinstance(kept, FeatureFile) and kept.path == tmp_path / "c" / "small.npy"
    with disk.in_memory_only():
        with disk.in_memory_only():
            assert isinstance(disk.put("at", _values(5, 2)), torch.Tensor)  # 40 bytes: not above
        over = disk.put("over", _values(11, 1))  # 44 bytes: scratch, even after the inner block
        assert disk.get("small") is kept
        assert isinstance(FeatureCache(tmp_path / "c").get("small"), FeatureFile)  # the folder is still read
    assert isinstance(over, FeatureFile) and torch.equal(over.load(), _values(11, 1))
    (scratch,) = (tmp_path / "tmp").iterdir()
    assert scratch.name.startswith("clipunlearn-features-") and over.path == scratch / "over.npy"
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["small.npy"]
    assert isinstance(disk.put("after", _values(11, 1)), FeatureFile) and (tmp_path / "c" / "after.npy").is_file()
    with pytest.raises(RuntimeError), disk.in_memory_only():
        raise RuntimeError("the block failed")
    assert disk.destination(1) == tmp_path / "c"  # writing to the folder again

    nowhere = FeatureCache(spill_bytes=40)
    assert isinstance(nowhere.put("at", _values(10, 1)), torch.Tensor)
    big = nowhere.put("big", _values(3, 2, 2))  # 48 bytes
    assert isinstance(big, FeatureFile) and big.path.parent.parent == tmp_path / "tmp"
    assert nowhere.destination(40) is None and nowhere.destination(41) == big.path.parent
    assert disk.destination(41) == tmp_path / "c"


def test_a_scratch_entry_that_leaves_memory_is_removed_but_still_read_by_its_holder(tmp_path):
    c = FeatureCache(tmp_path / "c", spill_bytes=0, max_items=1)
    c.put("kept", _values(2, 2))  # in the folder
    with c.in_memory_only():
        held = c.put("a", _values(4, 2))
        c.put("b", _values(4, 2))
        assert not held.path.exists() and torch.equal(held.load(), _values(4, 2))
        (c._scratch / "b.npy").unlink()  # removed by someone else meanwhile
        c.put("c", _values(1, 2))
    assert (tmp_path / "c" / "kept.npy").is_file()  # the folder's entries stay when they leave memory
    scratch = c._scratch
    del c, held
    gc.collect()
    assert not scratch.exists()


def test_a_scratch_folder_removed_by_someone_else_is_no_error_when_the_cache_goes(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: seen.append(u.exc_value))
    c = FeatureCache(spill_bytes=0)
    c.put("a", _values(2, 2))
    shutil.rmtree(c._scratch)
    del c
    gc.collect()
    assert seen == []


def test_an_entry_whose_block_fails_leaves_nothing_and_a_short_one_is_refused(tmp_path):
    c = FeatureCache(tmp_path / "c")
    with pytest.raises(RuntimeError, match="^boom$"), c.writer("k", 4, (2,)) as w:
        w.write(_values(2, 2))
        raise RuntimeError("boom")
    assert list((tmp_path / "c").iterdir()) == [] and c.get("k") is None and list(c._mem) == []
    with pytest.raises(ValueError) as e, c.writer("k", 4, (2,)) as w:
        w.write(_values(2, 2))
    assert str(e.value) == "2 of 4 rows were written"
    assert list((tmp_path / "c").iterdir()) == [] and c.get("k") is None
    with c.writer("k", 4, (2,)) as w:
        assert isinstance(w, FeatureWriter) and w.path == tmp_path / "c" / "k.npy"
        w.write(_values(4, 2))
    assert list(c._mem) == ["k"] and torch.equal(c.get("k").load(), _values(4, 2))
    memory = FeatureCache()
    with pytest.raises(RuntimeError), memory.writer("m", 1, (2,)) as w:
        raise RuntimeError("boom")
    assert list(memory._mem) == []


def test_the_lock_is_the_entrys_lock_file_in_the_folder_and_none_without_one(tmp_path, monkeypatch):
    asked = []
    monkeypatch.setattr(clipunlearn.io, "exclusive", lambda path: asked.append(path) or "held")
    c = FeatureCache(tmp_path / "c")
    assert c.lock("k1") == "held" and asked == [tmp_path / "c" / "k1.lock"]
    with c.in_memory_only():
        assert isinstance(c.lock("k1"), nullcontext)
    assert isinstance(FeatureCache().lock("k1"), nullcontext) and len(asked) == 1


# ----------------------------------------------------------------------------------------------- room checks


def _disk(monkeypatch, free: int) -> list:
    asked = []
    usage = namedtuple("usage", "total used free")

    def disk_usage(path):
        asked.append(path)
        return usage(2**50, 2**50 - free, free)

    monkeypatch.setattr(shutil, "disk_usage", disk_usage)
    return asked


def test_the_room_check_adds_the_entries_going_to_a_disk_and_keeps_a_margin(tmp_path, monkeypatch):
    c = FeatureCache(tmp_path / "new" / "c")
    sizes = [2**30, 2 * 2**30, 5]
    asked = _disk(monkeypatch, sum(sizes) + DISK_MARGIN_BYTES)
    c.check_room(sizes, "the test set")  # exactly enough
    assert asked == [tmp_path / "new" / "c"] and (tmp_path / "new" / "c").is_dir()
    c.check_room(sizes, "the test set")  # the folder exists now: fine
    _disk(monkeypatch, sum(sizes) + DISK_MARGIN_BYTES - 1)
    with pytest.raises(NotEnoughDiskError) as e:
        c.check_room(sizes, "the test set")
    assert str(e.value) == (
        f"The features of the test set need 3.0 GiB in {tmp_path / 'new' / 'c'}, but its disk has 3.3 GiB free. "
        "Free space there, or pass --cache-dir on a larger disk (TMPDIR for features that are not kept).")


def test_the_room_check_looks_only_at_entries_written_to_disk(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    asked = _disk(monkeypatch, 0)
    c = FeatureCache(spill_bytes=100)
    c.check_room([100, 50, 100], "small sets")  # all in memory: no disk asked
    assert asked == [] and list(tmp_path.iterdir()) == []
    with pytest.raises(NotEnoughDiskError) as e:
        c.check_room([100, 3 * 2**29], "the forgotten model")
    (scratch,) = tmp_path.iterdir()
    assert asked == [scratch] and str(e.value) == (
        f"The features of the forgotten model need 1.5 GiB in {scratch}, but its disk has 0.0 GiB free. "
        "Free space there, or pass --cache-dir on a larger disk (TMPDIR for features that are not kept).")


# ---------------------------------------------------------------------------------- computed once, side by side


def test_an_entry_asked_for_side_by_side_is_computed_once_and_its_second_look_is_not_a_miss(tmp_path):
    import threading
    import time

    from clipunlearn.io import computed_once, exclusive

    store: dict[str, int] = {}
    looks: list[bool] = []
    computes: list[int] = []

    def look(first: bool) -> int | None:
        looks.append(first)
        return store.get("k")

    def compute() -> int:
        computes.append(1)
        time.sleep(0.2)  # long enough for the other thread to wait on the lock
        store["k"] = 7
        return 7

    got: list[tuple[int, bool]] = []
    threads = [threading.Thread(target=lambda: got.append(
        computed_once(look, lambda: exclusive(tmp_path / "k.lock"), compute))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert computes == [1] and sorted(got) == [(7, False), (7, True)]
    assert looks.count(True) == 2 and looks.count(False) == 2  # each thread looked once before and once under it
    looks.clear()
    assert computed_once(look, lambda: exclusive(tmp_path / "k.lock"), compute) == (7, True) and looks == [True]


def test_a_failed_computation_stores_nothing_and_frees_the_lock(tmp_path):
    from clipunlearn.io import computed_once, exclusive

    def boom() -> int:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="^boom$"):
        computed_once(lambda first: None, lambda: exclusive(tmp_path / "k.lock"), boom)
    assert computed_once(lambda first: None, lambda: exclusive(tmp_path / "k.lock"), lambda: 3) == (3, False)
