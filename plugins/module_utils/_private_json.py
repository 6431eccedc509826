# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private JSON files of the control node (per-claw archive keys, per-claw R2 credentials): read without following a
link and only when no other user may read them; written atomically, 0600, in a 0700 directory.

Plain functions, no Ansible imports; runs on the control node's Python (and CPython 3.9).
"""

from __future__ import annotations

import json
import os
import tempfile


def read_private_json(path: str, what: str, error: type) -> dict | None:
    """The JSON document in ``path``, or None when there is no such file.

    ``what`` names the file in messages ("key file", "credential file"); ``error`` is the exception class raised.

    Raises:
        error: the path is a link or unreadable, the file is readable by group or others (mode & 0o077), or it is
            not JSON. The shape of the document is the caller's to check.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise error(f"cannot read the {what} {path}: {exc.strerror}")
    with os.fdopen(fd, "rb") as handle:
        st = os.fstat(handle.fileno())
        if st.st_mode & 0o077:
            raise error(f"{what} {path} is readable by others (mode {oct(st.st_mode & 0o777)}); chmod 600 it")
        try:
            return json.loads(handle.read())
        except ValueError as exc:
            raise error(f"{what} {path} is not JSON: {exc}")


def write_private_json(path: str, doc: dict) -> None:
    """Write ``doc`` to ``path`` atomically (temp file in the same directory, fsync, rename), mode 0600; the
    directory is made 0700 when missing. Raises OSError."""
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "w") as handle:
            os.fchmod(handle.fileno(), 0o600)
            json.dump(doc, handle, indent=2, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
