"""The file primitives every run, cache and page goes through (`clipunlearn.io`): nothing half-written,
nothing overwritten unasked, an entry computed once. Each against what a reader of the files sees."""
from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest
import torch

from clipunlearn import io
from clipunlearn.errors import RunExistsError


def test_an_atomic_write_replaces_the_file_only_when_its_block_succeeds(tmp_path):
    target = tmp_path / "new" / "deeper" / "f.txt"  # missing folders are made
    with io.atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(".f.txt.") and tmp.name.endswith(".tmp")
        assert not target.exists()  # nothing at the final name while the block writes
        tmp.write_text("one")
    assert target.read_text() == "one" and os.listdir(target.parent) == ["f.txt"]
    with pytest.raises(RuntimeError, match="midway"), io.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("midway")
    assert target.read_text() == "one" and os.listdir(target.parent) == ["f.txt"]  # old kept, no temporary left
    with io.atomic_path(target):  # a block that writes nothing replaces the file with the empty temporary
        pass
    assert target.read_text() == "" and os.listdir(target.parent) == ["f.txt"]


def test_text_is_written_as_utf8_and_json_with_two_spaces_its_own_key_order_and_a_final_newline(tmp_path):
    io.write_text(tmp_path / "t.md", "Ménière ✓")
    assert (tmp_path / "t.md").read_bytes() == "Ménière ✓".encode("utf-8")
    data = {"z": 1, "a": [np.float32(0.5), np.int64(3), torch.tensor(2.0)], "p": tmp_path / "x", "s": "é"}
    io.write_json(tmp_path / "d.json", data)
    text = (tmp_path / "d.json").read_text(encoding="utf-8")
    assert text == json.dumps({"z": 1, "a": [0.5, 3, 2.0], "p": str(tmp_path / "x"), "s": "é"}, indent=2) + "\n"
    assert list(json.loads(text)) == ["z", "a", "p", "s"]  # not sorted


def test_json_refuses_what_it_cannot_write_and_keeps_the_old_file(tmp_path):
    io.write_json(tmp_path / "d.json", {"ok": 1})
    with pytest.raises(TypeError, match=r"^not JSON serialisable: object$"):
        io.write_json(tmp_path / "d.json", {"bad": object()})
    assert json.loads((tmp_path / "d.json").read_text()) == {"ok": 1} and os.listdir(tmp_path) == ["d.json"]


def test_an_existing_output_is_refused_unless_overwriting_is_asked(tmp_path):
    free = tmp_path / "free"
    assert io.check_output_free(str(free), overwrite=False) == free  # a Path back, from a str
    (tmp_path / "taken").mkdir()
    with pytest.raises(RunExistsError) as err:
        io.check_output_free(tmp_path / "taken", overwrite=False, what="model file")
    assert str(err.value) == (f"The model file {str(tmp_path / 'taken')!r} exists already. Choose another path, or "
                              "pass --overwrite (overwrite=True) to replace it.")
    with pytest.raises(RunExistsError, match=r"^The output "):
        io.check_output_free(tmp_path / "taken", overwrite=False)
    assert io.check_output_free(tmp_path / "taken", overwrite=True) == tmp_path / "taken"


def test_a_staged_folder_appears_whole_and_only_when_its_block_succeeds(tmp_path):
    final = tmp_path / "runs" / "r"
    with io.staged_dir(final) as staging:
        assert staging.parent == final.parent and staging.name.startswith(f".r.{os.getpid()}.")
        assert staging.name.endswith(".partial") and not final.exists()
        (staging / "a.json").write_text("1")
    assert sorted(os.listdir(final)) == ["a.json"] and os.listdir(final.parent) == ["r"]
    with pytest.raises(RunExistsError, match="run folder"), io.staged_dir(final):
        pytest.fail("the block of a taken folder must not run")
    with pytest.raises(KeyboardInterrupt), io.staged_dir(final, overwrite=True) as staging:
        (staging / "b.json").write_text("2")
        raise KeyboardInterrupt  # an interrupted overwrite leaves the old run as it was
    assert sorted(os.listdir(final)) == ["a.json"] and os.listdir(final.parent) == ["r"]


def test_an_overwrite_replaces_the_whole_old_folder_and_leaves_no_copy_of_it(tmp_path):
    final = tmp_path / "r"
    final.mkdir()
    (final / "old.json").write_text("old")
    (tmp_path / ".r.old").mkdir()  # left by an overwrite killed between its two moves
    (tmp_path / ".r.old" / "older.json").write_text("older")
    with io.staged_dir(final, overwrite=True) as staging:
        (staging / "new.json").write_text("new")
    assert os.listdir(final) == ["new.json"] and os.listdir(tmp_path) == ["r"]


def test_staging_removes_the_leftovers_of_dead_processes_for_that_folder_only(tmp_path, sleeper, dead_pid):
    dead = dead_pid
    names = {"orphan": f".r[1].{dead}.x.partial",  # a name with glob characters is matched as written
             "alive": f".r[1].{sleeper.pid}.y.partial", "odd": ".r[1].notapid.z.partial",
             "sibling": f".r1.{dead}.w.partial", "other": f".r[1]x.{dead}.v.partial"}
    for name in names.values():
        (tmp_path / name).mkdir()
    with io.staged_dir(tmp_path / "r[1]"):
        pass
    left = set(os.listdir(tmp_path))
    assert names["orphan"] not in left and {names[k] for k in ("alive", "odd", "sibling", "other")} <= left
    assert sleeper.poll() is None  # asked about, not signalled


def test_a_process_is_alive_while_it_runs_and_another_users_counts_as_running(sleeper, dead_pid, monkeypatch):
    assert io.process_alive(os.getpid()) and io.process_alive(sleeper.pid)
    time.sleep(0.2)
    assert sleeper.poll() is None  # still running: the check is signal 0, which no process receives
    assert not io.process_alive(dead_pid)

    def denied(pid: int, sig: int) -> None:
        raise PermissionError(pid)

    monkeypatch.setattr(os, "kill", denied)
    assert io.process_alive(999_999)

    def unknown(pid: int, sig: int) -> None:
        raise OSError(pid)  # what a system without signal 0 answers: kept as maybe running

    monkeypatch.setattr(os, "kill", unknown)
    assert io.process_alive(999_999)
    monkeypatch.setattr(os, "kill", lambda pid, sig: pytest.fail("its own process is not signalled"))
    assert io.process_alive(os.getpid())


def test_an_exclusive_lock_makes_the_second_holder_wait_for_the_first(tmp_path):
    lock = tmp_path / "deep" / "k.lock"
    held, order = threading.Event(), []

    def first() -> None:
        with io.exclusive(lock):
            held.set()
            time.sleep(0.3)
            order.append("first done")

    t = threading.Thread(target=first)
    t.start()
    held.wait(5)
    with io.exclusive(lock):
        order.append("second in")
    t.join()
    assert order == ["first done", "second in"] and lock.is_file()
    with io.exclusive(lock):  # released after each block: taken again at once
        pass


def test_an_entry_is_read_when_there_computed_under_the_lock_when_not(tmp_path):
    looks: list[bool] = []
    locks: list[str] = []

    def lock():
        locks.append("taken")
        return nullcontext()

    def look_for(answers: list[int | None]):
        def look(first: bool) -> int | None:
            looks.append(first)
            return answers.pop(0)
        return look

    assert io.computed_once(look_for([5]), lock, lambda: pytest.fail("not computed")) == (5, True)
    assert looks == [True] and locks == []
    looks.clear()
    assert io.computed_once(look_for([None, 6]), lock, lambda: pytest.fail("not computed")) == (6, True)
    assert looks == [True, False] and locks == ["taken"]
    looks.clear()
    assert io.computed_once(look_for([None, None]), lock, lambda: 7) == (7, False)
    assert looks == [True, False] and locks == ["taken", "taken"]
    assert io.computed_once(look_for([0]), lock, lambda: 8) == (0, True)  # a falsy entry is an entry


def test_save_with_hands_the_writer_a_temporary_and_keeps_the_old_file_when_it_fails(tmp_path):
    target = tmp_path / "w.bin"
    io.save_with(target, lambda tmp: Path(tmp).write_bytes(b"ok"))
    assert target.read_bytes() == b"ok"

    def broken(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        io.save_with(target, broken)
    assert target.read_bytes() == b"ok" and os.listdir(tmp_path) == ["w.bin"]


def test_a_file_hash_is_the_sha256_of_its_bytes_remembered_per_path_size_and_time(tmp_path):
    f = tmp_path / "w.bin"
    f.write_bytes(b"x" * ((1 << 20) + 5))  # more than one block read
    assert io.file_hash(f) == hashlib.sha256(f.read_bytes()).hexdigest()[:16]
    assert io.file_hash(str(f)) == io.file_hash(tmp_path / "." / "w.bin")
    stamp = f.stat().st_mtime_ns
    f.write_bytes(b"y" * ((1 << 20) + 5))  # same size: told apart by the time
    os.utime(f, ns=(stamp + 10**9, stamp + 10**9))
    assert io.file_hash(f) == hashlib.sha256(f.read_bytes()).hexdigest()[:16]
    f.write_bytes(b"z" * ((1 << 20) + 5))
    os.utime(f, ns=(stamp + 10**9, stamp + 10**9))  # same path, size and time: the remembered hash
    assert io.file_hash(f) == hashlib.sha256(b"y" * ((1 << 20) + 5)).hexdigest()[:16]
    f.write_bytes(b"z")
    os.utime(f, ns=(stamp + 10**9, stamp + 10**9))  # another size, the same time: hashed again
    assert io.file_hash(f) == hashlib.sha256(b"z").hexdigest()[:16]
    twin = tmp_path / "twin.bin"
    twin.write_bytes(b"q")
    os.utime(twin, ns=(stamp + 10**9, stamp + 10**9))  # another file of the same size and time
    assert io.file_hash(twin) == hashlib.sha256(b"q").hexdigest()[:16]
