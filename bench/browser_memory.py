#!/usr/bin/env python3
"""Benchmark: the memory of an idle claw with and without its browser running (issue 16, docs/browser.md).

Boots a sandbox Mini (or uses the image of --image), bootstraps it, provisions one claw, lets it settle, and measures
every process of the claw's user (RSS and, on Linux, PSS: shared pages split between the processes that share them);
then has the claw open a page in its browser the way an agent does (``openclaw browser open`` as the claw's user),
lets it settle idle again and measures once more. Prints both, the browser's own share and the ratios.

    .venv/bin/python bench/browser_memory.py [--settle 20] [--image DIR] [--workdir /var/tmp/clawfarm-bench-browser]

Needs root (a sandbox Mini). Not a test: nothing here asserts. A Mac's numbers differ (another browser build, no PSS).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MINI = "bbrowse"
MINI_PY = [sys.executable, str(REPO / "tests/sandbox/mini.py")]
PAGE_PORT = 18080
# Runs inside the Mini (its /usr/bin/python3, 3.9): bytes of RSS and PSS of every process of a uid, and of the browser's.
MEASURE = r"""
import json, os, sys
uid, profile = int(sys.argv[1]), sys.argv[2]
procs = {}
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        status = open(f"/proc/{pid}/status").read()
        if int(status.split("Uid:")[1].split()[0]) != uid:
            continue
        ppid = int(status.split("PPid:")[1].split()[0])
        args = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        rollup = dict(line.split(":", 1) for line in open(f"/proc/{pid}/smaps_rollup").read().splitlines()[1:])
        procs[int(pid)] = {"ppid": ppid, "args": [a.decode(errors="replace") for a in args],
                           "rss": int(rollup["Rss"].split()[0]) * 1024, "pss": int(rollup["Pss"].split()[0]) * 1024}
    except (OSError, IndexError, KeyError, ValueError):
        continue
mains = {p for p, r in procs.items() if f"--user-data-dir={profile}" in r["args"] and not any(a.startswith("--type=") for a in r["args"])}
browser, todo = set(mains), list(mains)
while todo:
    parent = todo.pop()
    for p, r in procs.items():
        if r["ppid"] == parent and p not in browser:
            browser.add(p)
            todo.append(p)
# Chromium's crash handlers detach from the browser (their parent is PID 1): theirs too.
browser |= {p for p, r in procs.items() if r["args"] and r["args"][0].endswith("chrome_crashpad_handler")}
total = {k: sum(r[k] for r in procs.values()) for k in ("rss", "pss")}
part = {k: sum(procs[p][k] for p in browser) for k in ("rss", "pss")}
print(json.dumps({"processes": len(procs), "browser_processes": len(browser), "total": total, "browser": part}))
"""


def sh(command: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([*MINI_PY, "exec", MINI, "--", "sh", "-c", command], text=True, capture_output=True, check=check)


def playbook(inventory: Path, vars_file: Path, name: str, *args: str) -> str:
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    started = time.monotonic()
    result = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory), f"playbooks/{name}.yml",
                             "-e", f"@{vars_file}", *args], cwd=REPO, env=env, text=True, capture_output=True)
    print(f"  {name}: {time.monotonic() - started:.1f} s", flush=True)
    if result.returncode != 0:
        sys.exit(f"{name} failed:\n{result.stdout[-4000:]}\n{result.stderr[-2000:]}")
    return result.stdout


def measure(uid: int, profile: str) -> dict:
    return json.loads(sh(f"/usr/bin/python3 -c {shlex.quote(MEASURE)} {uid} {shlex.quote(profile)}").stdout)


def mib(n: int) -> str:
    return f"{n / 1048576:7.1f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settle", type=float, default=20, help="seconds of idleness before each measurement")
    parser.add_argument("--image", help="a bootstrapped sandbox image (tests/sandbox/README.md) to boot the Mini from")
    parser.add_argument("--workdir", default="/var/tmp/clawfarm-bench-browser")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("the browser memory benchmark boots a sandbox Mini: run it as root")
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    inventory, vars_file = work / "hosts.yml", work / "farm.yml"
    tunnel_id = str(uuid.uuid4())
    # A sandbox farm without Cloudflare or R2 (as scripts/demo.sh), with the sandbox's browser (Debian's chromium).
    vars_file.write_text(json.dumps({
        "claws_domain": "claws.sandbox.test", "cf_tunnel_mode": "local", "cf_tunnel_id": tunnel_id,
        "cloudflared_credentials": {"AccountTag": "sandbox", "TunnelID": tunnel_id, "TunnelSecret": "c2FuZGJveA=="},
        "cloudflared_binary": "/usr/local/bin/cloudflared", "cloudflared_binary_src": str(REPO / "tests/sandbox/cloudflared-standin.py"),
        "tailscale_enabled": False, "browser_install": "preinstalled", "browser_executable_path": "/usr/bin/chromium", "browser_version": "",
        "claw_browser_allowed_hostnames": ["127.0.0.1"]}))
    subprocess.run([*MINI_PY, "down", MINI, "--purge"], check=True)
    try:
        print(f"==> booting sandbox Mini {MINI}, bootstrap, provision", flush=True)
        subprocess.run([*MINI_PY, "up", MINI, "--inventory", str(inventory), *(["--image", args.image] if args.image else [])],
                       check=True, capture_output=True)
        playbook(inventory, vars_file, "bootstrap")
        claw_id = str(uuid.uuid4())
        user, home = f"claw-{claw_id[:8]}", f"/Users/claw-{claw_id[:8]}"
        playbook(inventory, vars_file, "provision", "-e", f"claw_id={claw_id}")
        uid = int(sh(f"id -u {user}").stdout)
        profile = f"{home}/.openclaw/browser/openclaw/user-data"
        sh(f"mkdir -p /tmp/page && echo '<title>bench</title><h1>idle</h1>' > /tmp/page/index.html && cd /tmp/page && "
           f"setsid /usr/bin/python3 -m http.server {PAGE_PORT} --bind 127.0.0.1 </dev/null >/dev/null 2>&1 &")
        time.sleep(args.settle)
        without = measure(uid, profile)
        program = re.search(r"program = (\S+)", sh(f"launchctl print system/com.mirascope.claw.{claw_id}").stdout).group(1)
        entry = program.rsplit("/bin/node", 1)[0] + "/lib/node_modules/openclaw/openclaw.mjs"
        state = f"{home}/.openclaw"
        cli = (f"cd {home} && exec env -i HOME={home} PATH=/usr/bin:/bin OPENCLAW_STATE_DIR={state} TMPDIR={state}/tmp "
               f"{program} {entry} browser --json open http://127.0.0.1:{PAGE_PORT}/")
        print("==> the claw opens a page in its browser", flush=True)
        sh(f"su -s /bin/sh {user} -c {shlex.quote(cli)}")
        time.sleep(args.settle)
        with_browser = measure(uid, profile)
    finally:
        subprocess.run([*MINI_PY, "down", MINI, "--purge"], check=False)
    print(f"\n{'idle claw':<28} {'processes':>9} {'RSS':>12} {'PSS':>12}")
    print(f"{'without its browser':<28} {without['processes']:>9} {mib(without['total']['rss'])} {mib(without['total']['pss'])}")
    print(f"{'with its browser':<28} {with_browser['processes']:>9} {mib(with_browser['total']['rss'])} {mib(with_browser['total']['pss'])}")
    print(f"{'  of which the browser':<28} {with_browser['browser_processes']:>9} {mib(with_browser['browser']['rss'])} "
          f"{mib(with_browser['browser']['pss'])}")
    print(f"\nratios (with / without its browser): RSS {with_browser['total']['rss'] / max(without['total']['rss'], 1):.2f}x, "
          f"PSS {with_browser['total']['pss'] / max(without['total']['pss'], 1):.2f}x")


if __name__ == "__main__":
    main()
