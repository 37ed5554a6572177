"""Atomic file writes and the user's cache folder."""

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np


class StorageError(OSError):
    """A file that could not be written; the message names the folder and the fix."""


def cache_dir() -> Path:
    """BLOODCELL_CACHE, else the user's cache folder; never inside the dataset."""
    base = os.environ.get("BLOODCELL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "bloodcell"
    )
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically: a reader sees the old file or the new, never half."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise StorageError(
            f"Cannot write to {path.parent}: {error.strerror}. Check that the folder is writable "
            "and the disk has free space."
        ) from error
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as error:
        Path(tmp).unlink(missing_ok=True)
        raise StorageError(
            f"Cannot write {path}: {error.strerror}. Check free disk space and permissions."
        ) from error


def write_json(path: Path, value) -> None:
    write_bytes(path, (json.dumps(value, indent=2, sort_keys=False) + "\n").encode())


def write_npz(path: Path, **arrays: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_bytes(path, buffer.getvalue())


def read_json(path: Path):
    return json.loads(Path(path).read_text())


def read_optional(path: Path):
    """The JSON value in `path`, or None where that file was never written."""
    return read_json(path) if path.exists() else None


def move(source: Path, target: Path) -> None:
    """Put `source` in place of `target` at once; `source` is gone afterwards either way."""
    try:
        os.replace(source, target)
    finally:
        source.unlink(missing_ok=True)


def sha256(path: Path) -> str:
    """The sha256 of a file's bytes, read a megabyte at a time."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
