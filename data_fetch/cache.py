"""Where datasets live on disk, and how they get there without half-written files."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import platformdirs

from .errors import DataFetchError

#: Bump when the code that builds arrays changes meaning, so old cache entries are not reused.
FORMAT_VERSION = 1


def cache_root() -> Path:
    """The cache folder: ``$MLHEP_DATA_DIR`` if set, else the user cache folder."""
    root = os.environ.get("MLHEP_DATA_DIR") or platformdirs.user_cache_dir("mlhep-course")
    return Path(root).expanduser()


def ensure_writable(folder: Path) -> Path:
    """Create ``folder`` and check it accepts files, with an error that says what to do."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise DataFetchError(
            f"cannot write to the data cache {folder} ({exc.strerror or exc}); set MLHEP_DATA_DIR "
            "to a writable folder, e.g. `export MLHEP_DATA_DIR=$HOME/mlhep-data`"
        ) from None
    return folder


def cache_key(description: dict) -> str:
    """A short stable hash of everything that determines a dataset's content."""
    text = json.dumps({"format": FORMAT_VERSION, **description}, sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def entry_path(name: str, source: str, key: str, root: Path | None = None) -> Path:
    """Where a dataset's cache entry lives, under ``root`` (default: :func:`cache_root`)."""
    return (cache_root() if root is None else Path(root)) / "datasets" / f"{name}-{source}-{key}.npz"


def write_entry(path: Path, arrays: dict, metadata: dict) -> None:
    """Write arrays + metadata atomically: a temporary name, renamed only when complete."""
    ensure_writable(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez_compressed(handle, __metadata__=np.array(json.dumps(metadata)), **arrays)
        # mkstemp makes the file private; a cache entry gets the usual permissions instead.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_entry(path: Path) -> tuple[dict, dict]:
    with np.load(path, allow_pickle=False) as npz:
        metadata = json.loads(str(npz["__metadata__"]))
        arrays = {k: npz[k] for k in npz.files if k != "__metadata__"}
    return arrays, metadata
