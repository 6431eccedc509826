"""The claw's browser (issue 16, docs/browser.md): its OpenClaw config block and what health reads of its processes."""
from __future__ import annotations

import pytest
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _browser, _claw

STATE = "/Users/claw-0a1b2c3d/.openclaw"
CHROMIUM = "/opt/mirascope/browser/156/chrome-mac-arm64/Google Chrome for Testing.app/Contents/MacOS/Google Chrome for Testing"


def test_the_browser_is_the_managed_profile_headless_sandboxed_on_the_claws_first_cdp_port():
    browser = _claw.gateway_config(8228, STATE, browser_executable_path=CHROMIUM)["browser"]
    assert browser == {"enabled": True, "executablePath": CHROMIUM, "headless": True, "noSandbox": False, "attachOnly": False,
                       "defaultProfile": "openclaw", "profiles": {"openclaw": {"cdpPort": 8228 + 11}}}
    family = _claw.port_family(8100, 1)
    assert family["cdp_first"] <= browser["profiles"]["openclaw"]["cdpPort"] <= family["cdp_last"]


def test_without_a_browser_it_is_off():
    assert _claw.gateway_config(8100, STATE)["browser"] == {"enabled": False}


def test_allowed_private_hosts_are_exact_names():
    browser = _claw.browser_config(8100, CHROMIUM, headless=False, allowed_hostnames=["localhost", "10.0.0.5"])
    assert browser["ssrfPolicy"] == {"allowedHostnames": ["localhost", "10.0.0.5"]} and browser["headless"] is False
    for bad in ("*.example.com", "a b", "http://x"):
        with pytest.raises(_claw.ClawInputError):
            _claw.browser_config(8100, CHROMIUM, allowed_hostnames=[bad])
    with pytest.raises(_claw.ClawInputError):
        _claw.browser_config(8100, "chromium")


def test_the_profile_lives_in_the_state_dir():
    assert _claw.browser_user_data_dir(STATE) == f"{STATE}/browser/openclaw/user-data"


UID = 612
UDD = f"{STATE}/browser/openclaw/user-data"


def proc(pid, ppid, cmdline, uid=UID, rss=100 * 2**20, create_time=1000.0):
    return {"pid": pid, "ppid": ppid, "uid": uid, "cmdline": cmdline, "rss": rss, "create_time": create_time}


def mini_processes():
    """A gateway (pid 10) with its browser tree, a neighbour's browser, and a browser of another uid naming A's dir."""
    return [
        proc(10, 1, ["node", "openclaw", "gateway"]),
        proc(20, 10, [CHROMIUM, "--remote-debugging-port=8111", f"--user-data-dir={UDD}", "--headless=new"], create_time=1234.6),
        proc(21, 20, [CHROMIUM, "--type=zygote", f"--user-data-dir={UDD}"]),
        proc(22, 21, [CHROMIUM, "--type=renderer"]),
        proc(23, 20, ["chrome_crashpad_handler", "--database=x"]),
        proc(30, 1, [CHROMIUM, "--user-data-dir=/Users/claw-b/.openclaw/browser/openclaw/user-data"], uid=613),
        proc(40, 1, [CHROMIUM, f"--user-data-dir={UDD}"], uid=501, create_time=1.0),
    ]


def test_the_managed_browser_is_the_claws_main_process_and_its_tree_counts():
    status = _browser.browser_status(mini_processes(), UID, UDD)
    assert status == {"running": True, "chromium_pid": 20, "started_at": 1235, "rss_bytes": 4 * 100 * 2**20, "processes": 4,
                      "other_browsers": 0}


def test_no_browser_and_another_users_process_naming_the_dir_is_not_the_claws():
    processes = [p for p in mini_processes() if p["pid"] not in (20, 21, 22, 23)]
    status = _browser.browser_status(processes, UID, UDD)
    assert status["running"] is False and status["chromium_pid"] is None and status["rss_bytes"] == 0


def test_another_profile_the_claw_started_counts_in_memory_not_as_the_managed_browser():
    processes = [proc(50, 1, [CHROMIUM, "--user-data-dir=/tmp/mine"], rss=2**20)]
    status = _browser.browser_status(processes, UID, UDD)
    assert status["chromium_pid"] is None and status["other_browsers"] == 1 and status["rss_bytes"] == 2**20


def test_ps_output_is_parsed():
    out = (f"   20    10   612 204800 {CHROMIUM.replace(' ', '_')} --remote-debugging-port=8111 --user-data-dir={UDD}\n"
           "garbage line\n   21    20   612 1024 chromium --type=zygote\n")
    records = _browser.ps_processes(out)
    assert [(r["pid"], r["ppid"], r["uid"], r["rss"]) for r in records] == [(20, 10, 612, 204800 * 1024), (21, 20, 612, 1024 * 1024)]
    status = _browser.browser_status(records, UID, UDD)
    assert status["chromium_pid"] == 20 and status["processes"] == 2 and status["started_at"] is None


def test_restarts_in_a_window():
    assert _browser.recent_starts({100, 200, 900, 1000}, now=1000, window=300) == [900, 1000]
    assert _browser.recent_starts(set(), now=1000, window=300) == []


@pytest.mark.parametrize("path, expected", [
    ("Default/Cookies", False), ("Default/Login Data", False), ("Default/Local Storage/leveldb/000003.log", False),
    ("Default/IndexedDB/https_example.com_0.indexeddb.leveldb/CURRENT", False), ("Default/Preferences", False),
    ("Local State", False), ("Default/Cache/Cache_Data/index", True), ("Default/Code Cache/js/index", True),
    ("Default/DawnWebGPUCache/data_0", True), ("GPUPersistentCache/index", True), ("Safe Browsing/x", True),
    ("component_crx_cache/metadata.json", True), ("SingletonLock", True), ("Default/Service Worker/CacheStorage/a", True),
])
def test_backups_keep_the_browsers_logins_and_leave_its_caches(path, expected):
    """The one exclude list (the claw role's claw_backup_excludes) on the managed profile's user data dir."""
    from pathlib import Path

    import yaml
    from ansible_collections.mirascope.clawfarm.plugins.module_utils import _r2

    defaults = yaml.safe_load((Path(__file__).resolve().parents[2] / "roles/claw/defaults/main.yml").read_text())
    full = f".openclaw/browser/openclaw/user-data/{path}"
    assert _r2.excluded(full, defaults["claw_backup_excludes"]) is expected

