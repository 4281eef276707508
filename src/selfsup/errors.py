"""The one exception type for mistakes a user can make (bad input, missing data, wrong names)."""
from __future__ import annotations

import difflib


class SelfSupError(Exception):
    """A problem the user can fix; the message says what to do."""


def unknown_name(kind: str, name: str, known: list[str]) -> SelfSupError:
    """An error for an unknown `name` that suggests the nearest known names."""
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.4)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return SelfSupError(f"unknown {kind} {name!r}.{hint} Known: {', '.join(sorted(known))}.")
