"""The one exception type for mistakes a user can make (bad input, missing data, wrong names)."""
from __future__ import annotations

import difflib


class SelfSupError(Exception):
    """A problem the user can fix; the message says what to do."""


class RunInterrupted(SelfSupError):
    """Training stopped on a signal (SIGTERM, SIGINT) after saving a checkpoint at the current step.

    `exit_code` is 128 + the signal number (143 for SIGTERM, 130 for SIGINT), the shell's and the cluster
    schedulers' convention for "killed by a signal", which they never read as success.
    """

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum, self.exit_code = signum, 128 + signum


def unknown_name(kind: str, name: str, known: list[str]) -> SelfSupError:
    """An error for an unknown `name` that suggests the nearest known names."""
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.4)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return SelfSupError(f"unknown {kind} {name!r}.{hint} Known: {', '.join(sorted(known))}.")
