"""Outputs are written under a temporary name beside the target and renamed when complete."""

from __future__ import annotations

import os
import secrets


def reserve_beside(path: str, suffix: str) -> str:
    """Create an empty, unique temporary file in ``path``'s directory and return its name.

    Unlike ``tempfile.mkstemp`` (mode 0600) it is created with mode 0666 less the umask, so the file
    the rename produces has the permissions any other new file would.
    """
    directory = os.path.dirname(os.path.abspath(path))
    while True:
        tmp = os.path.join(directory, f".rfsweep-{secrets.token_hex(6)}{suffix}")
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return tmp
        except FileExistsError:
            continue
