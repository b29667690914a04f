"""Writing outputs: through a temporary file in the same folder, then a rename, so that no reader ever sees a
half-written file and a failure leaves the previous file intact."""
from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import Optional

from .errors import HodecError


def write_atomic(path: str | Path, data: str | bytes):
    """Write text (UTF-8) or bytes to `path` atomically; a user-fixable OS failure becomes a HodecError."""
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        raise HodecError(f"output folder does not exist: {folder}")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:60]}.", suffix=".tmp", dir=folder)
    except OSError as err:
        raise HodecError(f"cannot write in {folder}: {err.strerror or err}") from None
    try:
        if isinstance(data, str):
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
                f.write(data)
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):  # a full disk, a read-only target: the user's to fix, not a hodec bug
            raise HodecError(f"cannot write {path}: {err.strerror or err}") from None
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_text(path: str | Path, max_bytes: Optional[int] = None) -> str:
    """A UTF-8 text file's content; a missing or unreadable file, or one that is not a regular file (a FIFO would
    hang) or is over `max_bytes`, becomes a HodecError naming it."""
    path = Path(path)
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise HodecError(f"not a regular file: {path}", str(path))
        if max_bytes is not None and info.st_size > max_bytes:
            raise HodecError(f"{info.st_size} bytes is too large for this file (at most {max_bytes})", str(path))
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise HodecError(f"no such file: {path}", str(path)) from None
    except (OSError, UnicodeDecodeError) as err:
        raise HodecError(f"cannot read {path}: {err}", str(path)) from None
