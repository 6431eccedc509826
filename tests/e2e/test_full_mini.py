"""A full Mini (issue 14): 12 claws on one sandbox Mini, provisioned at once; audit.yml clean and health.yml lists 12
healthy; a Mini reboot brings all 12 back (reboot-to-all-healthy time measured); a rolling runtime upgrade moves all 12
one at a time, each healthy before the next; idle memory per claw (gateway process tree) and the Mini's total.

The figures are printed at the end of the run (full_mini_report.py, a terminal-summary plugin) and written to
reports/full-mini.txt. The tests run in order on one module-scoped Mini (`full1`); -x stops at the first failure.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid

import pytest
from clawfarm_testlib import S3StandIn
from conftest import BIN, REPO, Mini, farm_vars, inventory_address, latest_audit_report, recap

pytest_plugins = ["full_mini_report"]

FULL = "full1"
CLAWS = 12
OLDER, NEWER = "2026.9.5", "2026.9.6"  # NEWER is the role default (what bootstrap installs); OLDER as in test_bootstrap
# Twelve gateways cold-starting at once share the test machine's 2 cores (about 10 s each alone): each provision may
# wait longer for health than the production default (180 s). A bound, not a measurement.
HEALTH_TIMEOUT = 600
FIGURES = REPO / "reports" / "full-mini.txt"
CLAW_IDS = [str(uuid.uuid4()) for _ in range(CLAWS)]


@pytest.fixture(scope="module")
def full(tmp_path_factory, farm, bootstrapped_image):
    """Sandbox Mini `full1`, made from the bootstrapped image and bootstrapped like the `mini` fixture's, with its own
    tunnel id."""
    if os.geteuid() != 0:
        pytest.skip("sandbox Minis need root")
    mini_py = [sys.executable, str(REPO / "tests/sandbox/mini.py")]
    inventory = tmp_path_factory.mktemp("full-mini") / "hosts.yml"
    vars_file = inventory.parent / "farm.yml"
    subprocess.run([*mini_py, "down", FULL, "--purge"], check=True)
    subprocess.run([*mini_py, "up", FULL, "--inventory", str(inventory), "--image", bootstrapped_image], check=True,
                   capture_output=True)
    s3 = S3StandIn(inventory_address(inventory).rsplit(".", 1)[0] + ".1", inventory.parent)
    s3.start()
    settings = farm_vars(farm["cf"], str(uuid.uuid4()), farm["zone_id"], s3)
    settings["claw_health_timeout"] = HEALTH_TIMEOUT
    vars_file.write_text(json.dumps(settings))
    node = Mini(FULL, inventory, vars_file)
    node.s3 = s3
    FIGURES.parent.mkdir(exist_ok=True)
    FIGURES.write_text("")
    started = time.monotonic()
    node.playbook("bootstrap", check=True)
    node.figures = {"bootstrap of a Mini made from the bootstrapped image": f"{time.monotonic() - started:.0f} s"}
    yield node
    s3.stop()
    subprocess.run([*mini_py, "down", FULL, "--purge"], check=False)


def figure(full, record_property, name: str, value: str) -> None:
    """Record a measured figure: in the test report (printed at the end of the run) and in reports/full-mini.txt."""
    record_property(f"full_mini: {name}", value)
    with FIGURES.open("a") as handle:
        handle.write(f"{name}: {value}\n")


def playbook_env() -> dict:
    return dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1",
                PATH=f"{BIN}:{os.environ['PATH']}")


def gateway_logs(full, claw_id: str) -> str:
    logs = f"/Users/claw-{claw_id[:8]}/.openclaw/logs"
    return f"\n--- {logs}\n" + full.sh(f"tail -n 30 {logs}/*.log 2>&1", check=False).stdout[-2500:]


def health_table(full) -> dict:
    """health.yml's table: ``{claw_id: {"port", "pid", "state", "runs", "rss_mib", "health"}}`` (asserting it ran)."""
    result = full.playbook("health", check=True)
    out = " ".join(result.stdout.split())
    rows = {}
    for m in re.finditer(r"([0-9a-f-]{36}) port (\d+) pid (\S+) (\S+) runs (\S+) rss (\d+) MiB cpu \S+% health (\w+)", out):
        rows[m.group(1)] = {"port": int(m.group(2)), "pid": m.group(3), "state": m.group(4), "runs": m.group(5),
                            "rss_mib": int(m.group(6)), "health": m.group(7)}
    return rows


def all_healthy(full) -> dict | None:
    rows = health_table(full)
    return rows if sorted(rows) == sorted(CLAW_IDS) and all(r["health"] == "ok" for r in rows.values()) else None


def runtime_of(full) -> dict:
    """``{claw_id: OpenClaw version}`` from each claw's LaunchDaemon plist (the runtime prefix it runs)."""
    out = full.sh("grep -o '/opt/openclaw/[^/]*/' /Library/LaunchDaemons/com.mirascope.claw.*.plist", check=False).stdout
    found = {}
    for line in out.splitlines():
        m = re.search(r"com\.mirascope\.claw\.([0-9a-f-]{36})\.plist:/opt/openclaw/([^/]+)/", line)
        if m:
            found[m.group(1)] = m.group(2)
    return found


def test_twelve_claws_provisioned_at_once(full, record_property):
    # The older runtime first (what a Mini runs before an upgrade); the twelve provisions then only use it.
    started = time.monotonic()
    full.playbook("bootstrap", "--tags", "openclaw", "-e", f"openclaw_runtime_version={OLDER}", check=True)
    figure(full, record_property, "install of a second runtime", f"{time.monotonic() - started:.0f} s")
    started = time.monotonic()
    extra = ["-e", f"@{full.farm_vars}", "-e", f"mini={FULL}", "-e", f"openclaw_runtime_version={OLDER}"]
    runs = [subprocess.Popen([str(BIN / "ansible-playbook"), "-i", str(full.inventory), "playbooks/provision.yml", *extra,
                              "-e", f"claw_id={claw_id}"], cwd=REPO, env=playbook_env(), text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for claw_id in CLAW_IDS]
    outputs = [run.communicate(timeout=1800)[0] for run in runs]
    elapsed = time.monotonic() - started
    failed = [(c, o) for c, r, o in zip(CLAW_IDS, runs, outputs, strict=True) if r.returncode]
    assert not failed, "\n\n".join(o[-2500:] + gateway_logs(full, c) for c, o in failed)
    figure(full, record_property, f"{CLAWS} concurrent provisions, all healthy", f"{elapsed:.0f} s")
    assert set(runtime_of(full).values()) == {OLDER}


def test_audit_is_clean_and_health_lists_twelve_healthy(full):
    audit = full.playbook("audit")
    out = " ".join(audit.stdout.split())
    assert audit.returncode == 0 and f"{FULL}: {CLAWS} claws, 0 free; {CLAWS} listening; 0 tombstones (0 bytes); 0 anomalies" in out, audit.stdout[-4000:]
    report = latest_audit_report()["minis"][FULL]
    assert sorted(c["claw_id"] for c in report["claws"]) == sorted(CLAW_IDS)
    assert len({c["port"] for c in report["claws"]}) == CLAWS and all(c["route_present"] for c in report["claws"])
    rows = health_table(full)
    assert sorted(rows) == sorted(CLAW_IDS), rows
    assert all(r["health"] == "ok" and r["state"] == "running" for r in rows.values()), rows


def test_reboot_brings_all_twelve_back(full, record_property):
    """The Mini restarts (launchd starts every claw's job at boot); every gateway listens again, then health.yml
    says ok for all 12. Times are from the start of the reboot."""
    ports = {r["port"]: c for c, r in health_table(full).items()}
    probe = ("/usr/bin/python3 -c 'import socket,sys\n"
             "for p in sys.argv[1:]:\n"
             "  s=socket.socket(); s.settimeout(0.5)\n"
             "  print(p) if s.connect_ex((\"127.0.0.1\", int(p))) == 0 else None\n"
             "  s.close()' " + " ".join(map(str, ports)))
    started = time.monotonic()
    full.reboot()
    up = time.monotonic() - started
    first_listen = {}
    deadline = started + 900
    while len(first_listen) < CLAWS and time.monotonic() < deadline:
        for port in full.sh(probe, check=False).stdout.split():
            first_listen.setdefault(int(port), time.monotonic() - started)
        time.sleep(1)
    missing = [ports[p] for p in ports if p not in first_listen]
    assert not missing, "not listening after the reboot:\n" + "".join(gateway_logs(full, c) for c in missing)
    rows = None
    while rows is None and time.monotonic() < deadline:
        rows = all_healthy(full)
    assert rows, health_table(full)
    healthy = time.monotonic() - started
    order = sorted(first_listen.values())
    figure(full, record_property, "reboot: Mini up again (sandbox down + up)", f"{up:.0f} s")
    figure(full, record_property, "reboot: gateways listening, first / median / last",
           f"{order[0]:.0f} / {order[len(order) // 2]:.0f} / {order[-1]:.0f} s after the reboot began")
    figure(full, record_property, "reboot-to-all-healthy (health.yml: 12 ok)", f"{healthy:.0f} s")
    figure(full, record_property, "reboot: launchd runs per claw (1 = no restart)",
           " ".join(sorted(r["runs"] for r in rows.values())))


def test_rolling_runtime_upgrade_of_all_twelve(full, record_property):
    """bootstrap --tags openclaw (role default NEWER) moves every claw to the new runtime one at a time: each claw's
    health is awaited before the next is touched, in port order; afterwards all 12 run NEWER and are healthy."""
    started = time.monotonic()
    result = full.playbook("bootstrap", "--tags", "openclaw", check=True)
    elapsed = time.monotonic() - started
    out = result.stdout
    shown = [m.group(1) for m in re.finditer(r"claw ([0-9a-f-]{36}) on " + FULL + r": user", " ".join(out.split()))]
    assert sorted(shown) == sorted(CLAW_IDS) and len(shown) == CLAWS, out[-4000:]
    # One at a time, in the loop's order (claw ids sorted): each claw's "Show the claw" comes after its health wait.
    assert shown == sorted(CLAW_IDS)
    assert recap(out)[FULL]["failed"] == 0
    assert set(runtime_of(full).values()) == {NEWER}
    assert all_healthy(full)
    figure(full, record_property, f"rolling runtime upgrade {OLDER} -> {NEWER} of {CLAWS} claws",
           f"{elapsed:.0f} s ({elapsed / CLAWS:.0f} s per claw)")


def test_idle_memory_per_claw_and_total(full, record_property):
    """Idle memory of each gateway's process tree: RSS (what health.yml reports; shared pages counted in every
    claw) and PSS (shared pages split among their users: what the claws really add up to), and the Mini's total."""
    time.sleep(30)  # let the last upgraded gateways settle: idle, not starting
    rows = all_healthy(full)
    assert rows
    pss_script = ("import os,sys\n"
                  "kids={}\n"
                  "for p in os.listdir('/proc'):\n"
                  "  if p.isdigit():\n"
                  "    try: kids.setdefault(int(open('/proc/%s/stat'%p).read().rsplit(')',1)[1].split()[1]),[]).append(int(p))\n"
                  "    except OSError: pass\n"
                  "for root in map(int, sys.argv[1:]):\n"
                  "  todo, pss = [root], 0\n"
                  "  while todo:\n"
                  "    pid = todo.pop(); todo += kids.get(pid, [])\n"
                  "    try: pss += sum(int(l.split()[1]) for l in open('/proc/%d/smaps_rollup'%pid) if l.startswith('Pss:'))\n"
                  "    except OSError: pass\n"
                  "  print(root, pss)\n")
    pids = " ".join(r["pid"] for r in rows.values())
    out = full.sh(f"/usr/bin/python3 - {pids} <<'EOF'\n{pss_script}EOF").stdout
    pss = {int(p): int(k) // 1024 for p, k in (line.split() for line in out.splitlines())}
    rss = sorted(r["rss_mib"] for r in rows.values())
    pss_mib = sorted(pss.values())
    memory = full.sh("free -m | awk '/^Mem:/ {print $2}'", check=False).stdout.strip()
    figure(full, record_property, "idle RSS per claw (gateway process tree), min / median / max",
           f"{rss[0]} / {rss[len(rss) // 2]} / {rss[-1]} MiB")
    figure(full, record_property, "idle PSS per claw (gateway process tree), min / median / max",
           f"{pss_mib[0]} / {pss_mib[len(pss_mib) // 2]} / {pss_mib[-1]} MiB")
    figure(full, record_property, f"idle total of {CLAWS} claws", f"RSS {sum(rss)} MiB, PSS {sum(pss_mib)} MiB "
           f"(test machine memory {memory} MiB)")
    assert all(v > 0 for v in pss_mib)
