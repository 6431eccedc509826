# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One place where the collection's modules run host commands (PRIVATE to the collection).

Every macOS command a module runs goes through :class:`CommandRunner`, so unit
tests replace one object and pin the exact argv (see tests/unit).  Commands are
always argv lists (never a shell string) and run with ``LC_ALL=C`` so that the
English texts the parsers match are what the tools print.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from dataclasses import dataclass, field


@dataclass
class CommandResult:
    """Outcome of one command: ``argv`` as run, exit status ``rc``, ``stdout``, ``stderr`` (text)."""

    argv: list
    rc: int
    stdout: str
    stderr: str

    @property
    def text(self) -> str:
        """stdout and stderr joined, for matching tools that log to either stream."""
        return (self.stdout or "") + (self.stderr or "")


class CommandError(Exception):
    """A command failed; ``str()`` says which command, its status, its output and how to fix it."""

    def __init__(self, result: CommandResult, hint: str = ""):
        self.result = result
        self.hint = hint
        output = (result.stderr or result.stdout or "").strip()
        message = f"`{' '.join(result.argv)}` failed with exit status {result.rc}"
        if output:
            message += f": {output}"
        if hint:
            message += f". {hint}"
        super().__init__(message)


@dataclass
class CommandRunner:
    """Runs argv lists through ``AnsibleModule.run_command`` and records what ran.

    ``module`` is an ``AnsibleModule`` (or a test double with ``run_command``).
    ``history`` lists every argv run, in order, for debugging and tests.
    Data passed as ``stdin`` is never recorded (it is how secrets reach a tool).
    """

    module: object
    history: list = field(default_factory=list)

    def run(self, argv: list, check: bool = False, hint: str = "", stdin: str | None = None) -> CommandResult:
        """Run ``argv``; with ``check`` raise :class:`CommandError` (carrying ``hint``) on a non-zero status."""
        argv = [str(a) for a in argv]
        self.history.append(argv)
        kwargs = {"environ_update": {"LC_ALL": "C", "LANG": "C", "LANGUAGE": "C"}}
        if stdin is not None:
            kwargs["data"] = stdin
            kwargs["binary_data"] = False
        rc, out, err = self.module.run_command(argv, **kwargs)
        result = CommandResult(argv=argv, rc=rc, stdout=out or "", stderr=err or "")
        if check and rc != 0:
            raise CommandError(result, hint)
        return result


@contextlib.contextmanager
def exclusive_lock(path: str, timeout: float = 120.0, what: str = "this change", timeout_error=None):
    """Hold ``fcntl.flock(LOCK_EX)`` on ``path`` (created 0600) for the ``with`` block.

    The collection's one flock-and-retry loop: it serialises read-then-write sequences of concurrent runs on one
    host (two provision runs picking the same free UID, two writers of one tunnel's ingress). The lock goes with
    the process, so a killed run never leaves it held.

    Args:
        timeout: seconds to wait for a run that holds the lock.
        what: what waits, for the default error's hint.
        timeout_error: ``(path, timeout) -> Exception`` to raise instead of the default ``CommandError``.

    Raises:
        CommandError: the lock was not obtained within ``timeout`` seconds (or what ``timeout_error`` returns).
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    if timeout_error is not None:
                        raise timeout_error(path, timeout) from None
                    raise CommandError(CommandResult(["flock", path], 1, "", f"another run has held the lock for {timeout:.0f} s"),
                                       hint=f"{what} waits for it; is a run stuck?") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)
