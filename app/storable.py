"""Text from outside made storable, and file names made safe to show (issue 16).

Every string the app stores comes from somewhere it does not control: a worker's error
message, a webhook's fields, an upload's file name, a job's parameters. Two kinds of
character in them cannot be stored everywhere: NUL (PostgreSQL's ``text`` and ``jsonb``
refuse it) and lone UTF-16 surrogates (no database encoding can write them), and one
value JSON columns cannot hold on PostgreSQL (``NaN``/``Infinity``). A job whose status
carried one used to stay IN_PROGRESS while every poll failed on a ``DataError``.

``install`` hooks a session factory so every flush passes its new and changed rows through
``storable`` first: the one boundary every stored value crosses, whoever wrote it.
"""

from __future__ import annotations

import math
import re
import unicodedata
from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.orm import Session, sessionmaker

REPLACEMENT = "\ufffd"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def storable_text(text: str) -> str:
    """``text`` with NUL and lone surrogates replaced by U+FFFD (a valid pair is one
    character in a Python string, so only lone halves match)."""
    return _UNSTORABLE.sub(REPLACEMENT, text) if _UNSTORABLE.search(text) else text


def storable(value: Any) -> Any:
    """``value`` (text or JSON-like data) with every string made storable and every
    non-finite float (which PostgreSQL's JSON refuses) replaced by None."""
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable(v) for v in value]
    return value


def has_lone_surrogate(value: Any) -> bool:
    """True when a string in ``value`` (JSON-like data) holds half a surrogate pair."""
    if isinstance(value, str):
        return _SURROGATE.search(value) is not None
    if isinstance(value, dict):
        return any(has_lone_surrogate(k) or has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(has_lone_surrogate(v) for v in value)
    return False


def display_name(name: str) -> str:
    """A file name as the pages may show it: storable, and with control and format
    characters (a right-to-left override U+202E turning ``gpj.exe`` around, zero-width
    joiners, bidi isolates, tabs, newlines) replaced by U+FFFD, so what is shown is what the
    name holds."""
    return "".join(
        REPLACEMENT if unicodedata.category(ch) in ("Cc", "Cf", "Cs") else ch for ch in name
    )


def _clean_rows(session: Session, _context: Any, _instances: Any) -> None:
    for row in (*session.new, *session.dirty):
        state = inspect(row)
        for attr in state.mapper.column_attrs:
            value = state.dict.get(attr.key)
            if isinstance(value, str | dict | list | float):
                cleaned = storable(value)
                if cleaned != value:  # NaN != NaN: a NaN is always replaced
                    setattr(row, attr.key, cleaned)


def install(factory: sessionmaker) -> None:
    """Make every flush of sessions from ``factory`` store only storable values."""
    event.listen(factory, "before_flush", _clean_rows)
