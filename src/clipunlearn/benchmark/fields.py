"""The fields of a suite file's tables, checked: one-line errors naming the file, the field and the
closest known name. Shared by the suite (:mod:`.suite`) and its oracles (:mod:`.oracles`)."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..errors import ClipUnlearnError, suggest


def fail(where: str, what: str, name: str | None = None, known: list[str] | None = None) -> ClipUnlearnError:
    """The error to raise for ``where`` (a file and a field): ``what`` is wrong with it, and the known
    name closest to ``name``, if any."""
    hint = suggest(name, known) if name is not None and known else ""
    return ClipUnlearnError(f"{where}: {what}.{hint}")


def check_keys(where: str, table: dict[str, Any], allowed: set[str]) -> None:
    for key in table:
        if key not in allowed:
            hint = suggest(key, sorted(allowed)) or f" Known fields: {', '.join(sorted(allowed))}."
            raise ClipUnlearnError(f"{where}: unknown field {key!r}.{hint}")


def table_entries(where: str, entries: Any, allowed: set[str], example: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each table of an array of tables (``[[methods]]``, ``[[oracles]]``, ...), with where it is, its
    fields checked against ``allowed``."""
    for i, entry in enumerate(entries or []):
        w = f"{where}[{i}]"
        if not isinstance(entry, dict):
            raise fail(w, f"must be a table such as {example}")
        check_keys(w, entry, allowed)
        yield w, entry


__all__ = ["check_keys", "fail", "table_entries"]
