"""The gc_freeze callback (plugins/callback/gc_freeze.py): a play's start freezes the objects alive then, and the
collection's ansible.cfg enables it."""
from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path

from ansible_collections.mirascope.clawfarm.plugins.callback import gc_freeze

REPO = Path(__file__).resolve().parents[2]


def test_a_play_start_freezes_the_objects_alive_then_and_not_those_made_after():
    gc.unfreeze()
    try:
        alive = [[n] for n in range(1000)]
        gc_freeze.CallbackModule().v2_playbook_on_play_start(play=None)
        frozen = gc.get_freeze_count()
        assert frozen >= len(alive)
        made_after = [[n] for n in range(1000)]
        # Frozen objects freed since (by other threads of the test process) leave the count; none made after join it.
        assert len(made_after) == 1000 and gc.get_freeze_count() <= frozen
    finally:
        gc.unfreeze()


def test_the_collections_ansible_cfg_enables_it():
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"))
    env.pop("ANSIBLE_CALLBACKS_ENABLED", None)
    dump = subprocess.run([str(Path(sys.executable).parent / "ansible-config"), "dump", "--only-changed"], cwd=REPO,
                          env=env, capture_output=True, text=True, check=True).stdout
    enabled = next(line for line in dump.splitlines() if line.startswith("CALLBACKS_ENABLED"))
    assert "mirascope.clawfarm.gc_freeze" in enabled
