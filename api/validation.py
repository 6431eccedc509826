"""The collection's input validation, used by the API (one implementation: ``plugins/module_utils/_claw.py``).

The service runs from the repository, whose ``scripts/setup.sh`` links the checkout as
``.collections/ansible_collections/mirascope/clawfarm`` (the same link the playbooks resolve
``mirascope.clawfarm.*`` through). This module imports ``_claw`` through that link, so the API and the collection
check a claw id, an env and a token with the very same functions, and raise the same ``ClawInputError``.
"""
from __future__ import annotations

import importlib
import sys

from .config import REPO

_COLLECTIONS = REPO / ".collections"
if not (_COLLECTIONS / "ansible_collections" / "mirascope" / "clawfarm").exists():
    raise ImportError(f"{_COLLECTIONS}/ansible_collections/mirascope/clawfarm is missing: run scripts/setup.sh")
if str(_COLLECTIONS) not in sys.path:
    sys.path.append(str(_COLLECTIONS))

claw = importlib.import_module("ansible_collections.mirascope.clawfarm.plugins.module_utils._claw")
ClawInputError = claw.ClawInputError
mini = importlib.import_module("ansible_collections.mirascope.clawfarm.plugins.module_utils._mini")
MiniInputError = mini.MiniInputError
browser = importlib.import_module("ansible_collections.mirascope.clawfarm.plugins.module_utils._browser")


def check_env(env: dict) -> dict:
    """``env`` as ``claw_env`` takes it: the collection's :func:`validate_env` plus the dotenv rendering the Mini will
    do (a value with both quote kinds fails there), so a value that would fail on the Mini fails here, at once.

    Raises:
        ClawInputError: the collection's message, which never shows a value.
    """
    clean = claw.validate_env(env)
    claw.render_dotenv(clean)
    return clean


def check_env_names(names: list) -> list:
    """Names for ``claw_env_unset`` (the collection's :func:`validate_env_unset`): valid, non-reserved names, sorted.

    Raises:
        ClawInputError: the first bad name (names are not secret).
    """
    return claw.validate_env_unset(names)


def check_env_change(env_set: dict | None, env_unset: list | None) -> None:
    """An ``env_set``/``env_unset`` pair as ``claw_env`` will apply it (the collection's :func:`desired_env`): a
    name both set and unset is refused.

    Raises:
        ClawInputError: the collection's message.
    """
    claw.desired_env({}, None, env_set or {}, env_unset or [])
