"""Secret keys kept in the data folder (the preview signing key, the store host's key): created once, whole."""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

from .errors import ConfigError

KEY_BYTES = 32


def read_or_create_key(path: Path) -> bytes:
    """The key in `path`, created first when there is none. Any number of processes may race here: the key is
    written to a private temporary file and linked into place, so no reader ever sees an empty or partial key,
    and every process gets the one key that won."""
    try:
        return _read_whole(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(secrets.token_bytes(KEY_BYTES))
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(tmp, path)  # atomic, and fails when another process linked its key first
        except FileExistsError:
            pass
    finally:
        os.unlink(tmp)
    return _read_whole(path)


def _read_whole(path: Path) -> bytes:
    key = path.read_bytes()
    if len(key) < KEY_BYTES:  # a key written by hand, or by a version that could leave it partial
        raise ConfigError(f"{path} holds {len(key)} bytes, not a key; delete it to make a new one")
    return key
