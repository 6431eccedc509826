"""Ansible callback for the benches: the wall time of every task, written as JSON lines.

Enabled by bench/provision_bench.py (``ANSIBLE_CALLBACK_PLUGINS=bench/callback_plugins``,
``ANSIBLE_CALLBACKS_ENABLED=task_timer``, ``CLAWFARM_TASK_TIMES=<file>``). Each line is
``{"playbook": str, "play": str, "task": str, "host": str, "seconds": float, "status": "ok"|"changed"|"skipped"|"failed",
"test": str|None}`` (``test``: pytest's PYTEST_CURRENT_TEST when a test ran the playbook, for profiling the suite); a task
run on several hosts (or in a loop) gives one line per host, timed from the task's start to that host's result.
Not part of the collection: ansible-core ships no per-task timer (ansible.posix's profile_tasks would need the
ansible.posix collection on the control node).
"""
from __future__ import annotations

import json
import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: task_timer
type: aggregate
short_description: per-task wall time as JSON lines (bench only)
description: Writes one JSON line per task and host to the file named by CLAWFARM_TASK_TIMES.
requirements: [CLAWFARM_TASK_TIMES set in the environment]
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "task_timer"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self._path = os.environ.get("CLAWFARM_TASK_TIMES")
        self._play = ""
        self._playbook = ""
        self._task = ""
        self._started = time.monotonic()

    def v2_playbook_on_start(self, playbook):
        self._playbook = os.path.basename(playbook._file_name)

    def v2_playbook_on_play_start(self, play):
        self._play = play.get_name()

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._task = task.get_name()
        self._started = time.monotonic()

    def v2_playbook_on_handler_task_start(self, task):
        self.v2_playbook_on_task_start(task, False)

    def _write(self, result, status):
        if not self._path:
            return
        line = {"playbook": self._playbook, "play": self._play, "task": self._task, "host": result._host.get_name(),
                "seconds": round(time.monotonic() - self._started, 3), "status": status,
                "test": os.environ.get("PYTEST_CURRENT_TEST")}
        with open(self._path, "a") as out:
            out.write(json.dumps(line) + "\n")

    def v2_runner_on_ok(self, result):
        self._write(result, "changed" if result._result.get("changed") else "ok")

    def v2_runner_on_skipped(self, result):
        self._write(result, "skipped")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._write(result, "failed")
