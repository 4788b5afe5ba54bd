"""Writing a file so that a kill at any moment leaves the old file or the whole new one, never half.

Shared by the run directory's `settings.json` (`honed.runs.ledger`), saved artifacts (`honed.artifact`) and
the stamp that vouches for an assembled model file (`honed.models.assemble`).
"""

from __future__ import annotations

import os
from pathlib import Path


def write_atomically(path: str | os.PathLike, text: str, *, mode: int | None = None) -> None:
    """Write `text` (UTF-8) to `path` through a temporary file beside it: fsync'd, renamed over `path`,
    and the rename made durable. `mode`: the file's permissions (default: as the umask leaves them). The
    temporary file is removed when writing it fails; the error is raised."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with temporary.open("w", encoding="utf-8") as handle:
            if mode is not None:
                os.fchmod(handle.fileno(), mode)
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def fsync_directory(directory: Path) -> None:
    """Make a rename or a new file in `directory` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
