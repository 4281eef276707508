"""Small helpers shared across the package."""
from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch


def move_to(batch: Any, device: torch.device | str) -> Any:
    """Move a tensor, or a dict / list / tuple of tensors, to `device`."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: move_to(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to(v, device) for v in batch)
    return batch


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Call `write(tmp_path)`, fsync it, then rename onto `path` and fsync the folder: readers see the old
    file or the new, never half, and the old one stays until the new one is on disk (a power cut included).

    A full disk is a SelfSupError naming the folder; the previous file is untouched.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise disk_error(e, path) from e
    os.close(fd)
    try:
        write(tmp)
        fsync_path(tmp)
        os.replace(tmp, path)
        fsync_path(path.parent)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES):
            raise disk_error(e, path) from e
        raise


def fsync_path(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(tmp: str | Path, target: str | Path) -> None:
    """Move a finished temporary file or folder (written beside `target`, on the same file system) onto
    `target` in one rename: its files are fsync'd first and the parent folder after, so readers see the
    old target or the complete new one. The one rename outside `atomic_write` (folders built by other
    libraries: a LitData cache, a Hugging Face model)."""
    tmp, target = Path(tmp), Path(target)
    for f in ([tmp] if tmp.is_file() else [p for p in tmp.rglob("*") if p.is_file()]):
        fsync_path(f)
    try:
        os.replace(tmp, target)
    except OSError as e:
        raise disk_error(e, target) from e
    fsync_path(target.parent)


def disk_error(error: OSError, path: Path) -> Exception:
    """One clear line for a write that the disk refused (full, read-only, no permission)."""
    from selfsup.errors import SelfSupError
    reason = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
              errno.EROFS: "the file system is read-only"}.get(error.errno, error.strerror or str(error))
    return SelfSupError(f"cannot write {path.name} in {path.parent}: {reason}; free space or choose another "
                        f"folder (--run-dir); the previous {path.name}, if any, is intact")


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def atomic_save_npy(path: str | Path, array: Any) -> None:
    """`np.save` through `atomic_write` (into an open file: given a name, np.save would append `.npy`)."""
    import numpy as np

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.save(f, array)
    atomic_write(path, write)


def cache_write(write: Callable[[], None]) -> bool:
    """Run an atomic cache write, ignoring a disk that refuses it (read-only home, full disk): a cache
    only saves time, so failing to write one costs the recomputation next time, never the run."""
    from selfsup.errors import SelfSupError
    try:
        write()
    except (OSError, SelfSupError):
        return False
    return True


def load_average() -> list[float]:
    """The 1-, 5- and 15-minute load averages, rounded: recorded beside every timing a benchmark reports."""
    return [round(x, 2) for x in os.getloadavg()]


def hash_tensor(digest: Any, t: torch.Tensor) -> None:
    """Feed a tensor's dtype, shape and raw bytes (its own buffer, not a copy; 0-dim tensors too) to `digest`:
    the one way selfsup fingerprints tensors (checkpoint checksums, the feature cache's keys)."""
    t = t.detach().cpu().contiguous()
    digest.update(f"\0{t.dtype}\0{tuple(t.shape)}\0".encode())
    digest.update(t.reshape(-1).view(torch.uint8).numpy())
