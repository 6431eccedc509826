"""Parsers of pmset / systemsetup output (formats from pmset(1), systemsetup(8) and real Mac mini output)."""
from __future__ import annotations

from ansible_collections.mirascope.clawfarm.plugins.module_utils import _macos_settings as ms

# pmset -g on a Mac mini (macOS 15), as printed.
PMSET_G = """System-wide power settings:
Currently in use:
 standby              0
 Sleep On Power Button 1
 autorestart          0
 powernap             1
 networkoversleep     0
 disksleep            10
 sleep                1 (sleep prevented by sharingd, powerd)
 ttyskeepawake        1
 displaysleep         10
 tcpkeepalive         1
 womp                 1
"""


def test_parse_pmset():
    settings = ms.parse_pmset(PMSET_G)
    assert settings["sleep"] == 1 and settings["Sleep On Power Button"] == 1 and settings["displaysleep"] == 10
    assert "System-wide power settings:" not in settings


def test_pmset_changes_only_what_differs_and_skips_unsupported():
    wanted = {"sleep": 0, "displaysleep": 0, "womp": 1, "autorestart": 1, "hibernatemode": 0}
    assert ms.pmset_changes(PMSET_G, wanted) == ["sleep", "0", "displaysleep", "0", "autorestart", "1"]
    done = PMSET_G.replace(" sleep                1 (", " sleep                0 (").replace("displaysleep         10", "displaysleep         0") \
        .replace("autorestart          0", "autorestart          1")
    assert ms.pmset_changes(done, wanted) == []


def test_restart_after_power_failure():
    assert ms.restart_after_power_failure("Restart After Power Failure: On\n") is True
    assert ms.restart_after_power_failure("Restart After Power Failure: Off\n") is False
    assert ms.restart_after_power_failure("Not supported on this machine.\n") is None
    assert ms.restart_after_power_failure("Error:-99 File:...\nRestart After Power Failure: Off\n") is False
