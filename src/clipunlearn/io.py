"""Atomic file writes and run folders: nothing half-written, nothing overwritten by surprise."""
from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

from .errors import RunExistsError


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def check_output_free(path: str | os.PathLike[str], overwrite: bool, what: str = "output") -> Path:
    """Raise if ``path`` exists and the user did not ask to overwrite it."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise RunExistsError(
            f"The {what} {str(path)!r} exists already. Choose another path, or pass --overwrite "
            f"(overwrite=True) to replace it."
        )
    return path


@contextmanager
def staged_dir(final: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Path]:
    """Build a folder under a temporary name and move it into place when the block succeeds.

    An interrupted block leaves ``final`` as it was (absent, or the old run if overwriting). The
    temporary name holds the process id: a block whose process was killed outright leaves its folder,
    and the next block for the same ``final`` removes it.
    """
    final = check_output_free(final, overwrite, "run folder")
    final.parent.mkdir(parents=True, exist_ok=True)
    for left in final.parent.glob(f".{glob.escape(final.name)}.*.partial"):  # of killed runs (SIGKILL, power)
        pid = left.name[len(final.name) + 2:].split(".")[0]
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(left, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.{os.getpid()}.", suffix=".partial", dir=final.parent))
    try:
        yield staging
        if final.exists():
            old = final.with_name(f".{final.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(final, old)
            os.replace(staging, final)
            shutil.rmtree(old)
        else:
            os.replace(staging, final)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def process_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine (another user's counts as running)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:  # pragma: no cover - Windows: no signal 0; keep what may be another process's
        return True
    return True


@contextmanager
def exclusive(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an advisory lock on the file ``path`` (created if missing) for the block, so that processes
    sharing a cache folder compute an entry once: the others wait, then read it. The kernel releases
    the lock when its holder dies, even by SIGKILL. Where there is no ``fcntl`` (Windows) there is no
    lock: an entry may then be computed twice, and is still written atomically."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    lock = Path(path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def computed_once(look: Callable[[bool], T | None], lock: Callable[[], AbstractContextManager[Any]],
                  compute: Callable[[], T]) -> tuple[T, bool]:
    """A cache entry computed by one process of those that ask for it side by side: ``look(True)``'s
    entry if there is one; else, holding ``lock()`` (e.g. :func:`exclusive` on the entry's lock file),
    ``look(False)``'s (another process computed it while this one waited) or ``compute()``'s, which
    stores it. ``look``'s argument: whether it is the first look (a cache counts only that one's miss).
    Returns the entry and whether it was found."""
    found = look(True)
    if found is not None:
        return found, True
    with lock():
        found = look(False)
        if found is not None:
            return found, True
        return compute(), False


def save_with(path: str | os.PathLike[str], writer: Callable[[Path], None]) -> None:
    """Call ``writer(tmp)`` and move ``tmp`` onto ``path`` atomically."""
    with atomic_path(path) as tmp:
        writer(tmp)


_FILE_HASHES: dict[tuple[str, int, int], str] = {}


def file_hash(path: str | os.PathLike[str]) -> str:
    """sha256 of a file's bytes (remembered per path, size and mtime within the process)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _FILE_HASHES:
        h = hashlib.sha256()
        with p.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _FILE_HASHES[key] = h.hexdigest()[:16]
    return _FILE_HASHES[key]
