"""The evaluation's output file, written after every draw so that an interrupted evaluation loses at most
the draw it was in, and resumed from the rows it holds.

The file is JSON: {"settings": what was asked (run, data, protocols, budgets, seeds...), "rows": the rows
finished so far, "finished": false until the last draw}, then the summary and the test set's description
when finished. It is replaced atomically, so a reader (or a crash) never sees half a file. A second run of
the same evaluation reuses the rows of every finished draw; a file that holds another evaluation (other
settings) is refused rather than mixed in.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from selfsup.errors import SelfSupError
from selfsup.utils import atomic_write_text


def settings_key(settings: dict) -> str:
    """A short name for a set of settings (sha256 of their JSON), for default file names."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:10]


class EvaluationLog:
    """Rows of one evaluation in `path` (None: kept in memory only)."""

    def __init__(self, path: str | Path | None, settings: dict):
        self.path = None if path is None else Path(path)
        self.settings = json.loads(json.dumps(settings, default=str))  # as it will read back from the file
        self.rows: list[dict] = []
        self.resumed = 0
        if self.path is not None and self.path.exists():
            self.rows = self.read_rows()
            self.resumed = len(self.rows)

    def read_rows(self) -> list[dict]:
        try:
            earlier = json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise SelfSupError(f"{self.path} exists but is not an evaluation file ({e}); delete it or pick "
                               f"another --out") from e
        if earlier.get("settings") != self.settings:
            raise SelfSupError(f"{self.path} holds another evaluation (other run, data, protocols, budgets, "
                               f"seeds, or the protocols of another selfsup version); pick another --out, or "
                               f"delete it to start again")
        return list(earlier.get("rows", []))

    def done(self, budget: Any, seed: int) -> list[dict] | None:
        """The rows written earlier for (budget, seed), or None when that draw is still to run."""
        label = "all" if budget is None else budget
        rows = [r for r in self.rows if r["labels_per_class"] == label and r["seed"] == seed]
        return rows or None

    def add(self, rows: list[dict]) -> None:
        self.rows += rows
        self.write({"finished": False})

    def finish(self, result: dict) -> None:
        self.write(result | {"finished": True})

    def write(self, extra: dict) -> None:
        if self.path is not None:
            atomic_write_text(self.path, json.dumps({"settings": self.settings, "rows": self.rows} | extra,
                                                    indent=2) + "\n")
