"""Test-run callback plugin: every ``ansible-playbook`` of one pytest run shares one AnsiballZ payload cache.

ansible-core builds a module's payload (the module and every module_utils file it imports, parsed and zipped) once
per ``ansible-playbook`` process, in a cache under that process's own local temp dir
(``module_common._find_module_utils``: ``<DEFAULT_LOCAL_TMP>/ansiballz_cache/<module fqn>-<compression>-<extension
key>``), and the suite starts several hundred playbooks that build the same few dozen payloads again each time: about
40% of the control node's CPU of a no-op provision (py-spy; docs/maintaining.md). Within one pytest run the sources
do not change, which is the same assumption Ansible makes within one playbook run, so this plugin points that lookup
at ``$CLAWFARM_TEST_ANSIBALLZ_CACHE`` (a directory tests/conftest.py makes for the run and removes after it) and
leaves the rest to Ansible: the same file names, its own lock per entry (``_locking.named_mutex``) and its atomic
writes, so the two pytest-xdist workers share it too. The payload is the one Ansible would have built (what runs on
the Mini is unchanged); a task's arguments are never in it (they are added per task, after the lookup).

Enabled for the test run only (tests/conftest.py ``pytest_configure`` sets ``ANSIBLE_CALLBACKS_ENABLED`` and
``ANSIBLE_CALLBACK_PLUGINS``), never by the collection's ``ansible.cfg``: a cache that outlives a run would need a
key over every source it was built from. Without the variable it does nothing.
"""
from __future__ import annotations

import functools
import os

from ansible.executor import module_common
from ansible.plugins.callback import CallbackBase

CACHE_VAR = "CLAWFARM_TEST_ANSIBALLZ_CACHE"


class _LocalTmpIn:
    """``ansible.constants`` as module_common sees it, with ``DEFAULT_LOCAL_TMP`` replaced by ``directory``."""

    def __init__(self, constants, directory: str):
        self._constants = constants
        self.DEFAULT_LOCAL_TMP = directory

    def __getattr__(self, name):
        return getattr(self._constants, name)


def _use_run_cache(directory: str) -> None:
    """Wrap ``module_common._find_module_utils`` (once per process) so its payload lookup uses ``directory``."""
    build = module_common._find_module_utils
    if getattr(build, "clawfarm_run_cache", None):
        return

    @functools.wraps(build)
    def build_in_run_cache(*args, **kwargs):
        constants = module_common.C
        module_common.C = _LocalTmpIn(constants, directory)
        try:
            return build(*args, **kwargs)
        finally:
            module_common.C = constants

    build_in_run_cache.clawfarm_run_cache = True
    module_common._find_module_utils = build_in_run_cache


class CallbackModule(CallbackBase):
    """Installs the wrapper when loaded (in the main process, before any task worker is forked)."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "ansiballz_run_cache"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        directory = os.environ.get(CACHE_VAR)
        if directory and os.path.isdir(directory):
            _use_run_cache(directory)
