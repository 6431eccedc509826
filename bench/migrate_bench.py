#!/usr/bin/env python3
"""Benchmark: moving a claw between two sandbox Minis with the pre-copy method (rsync while the gateway runs, stop,
delta, start) against the archive method (stop, archive to R2, restore, start - the design's path), in one run, on
the same claw with a home of --size-mib (default 1 GiB). Prints downtime (gateway stopped on the source -> healthy
on the target) and total time of each, and their ratios (archive / pre-copy).

    .venv/bin/python bench/migrate_bench.py [--size-mib 1024] [--workdir /var/tmp/clawfarm-bench]

Needs root (sandbox Minis). Uses the same stand-ins as the end-to-end tests: moto for R2 on the first Mini's host
side, the Cloudflare API stand-in on loopback. Not a test: nothing here asserts on time.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / ".collections"))
sys.path.insert(0, str(REPO / "tests"))
from clawfarm_testlib import CF_TOKEN, CloudflareStandIn, S3StandIn, free_port, wait_http  # noqa: E402

MINIS = ("bm1", "bm2")
MINI_PY = [sys.executable, str(REPO / "tests/sandbox/mini.py")]
REPORT = re.compile(r"moved from (\S+) \(port \d+\) to (\S+) \(port \d+\) by (\w+): downtime ([\d.]+) s .*? total ([\d.]+) s; "
                    r"bytes moved: (.*?)'")


def load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def playbook(inventory: Path, name: str, *args: str) -> str:
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    started = time.monotonic()
    result = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory), f"playbooks/{name}.yml", *args],
                            cwd=REPO, env=env, text=True, capture_output=True)
    shown = " ".join(a for a in args if a != "-e" and not a.startswith("claw_id"))
    print(f"  {name} {shown}: {time.monotonic() - started:.1f} s", flush=True)
    if result.returncode != 0:
        sys.exit(f"{name} failed:\n{result.stdout[-4000:]}\n{result.stderr[-2000:]}")
    return result.stdout


def migrate(inventory: Path, claw_id: str, target: str, method: str) -> dict:
    out = " ".join(playbook(inventory, "migrate", "-e", f"claw_id={claw_id}", "-e", f"target={target}", "-e", f"method={method}").split())
    match = REPORT.search(out)
    if not match:
        sys.exit(f"no migration report in the output:\n{out[-3000:]}")
    return {"method": match.group(3), "downtime_s": float(match.group(4)), "total_s": float(match.group(5)), "bytes": match.group(6)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--workdir", default="/var/tmp/clawfarm-bench")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("the migration benchmark boots sandbox Minis: run it as root")
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    archive_bench = load("archive_bench", REPO / "bench/archive_bench.py")
    e2e = load("e2e_conftest", REPO / "tests/e2e/conftest.py")
    home_src = work / f"home-{args.size_mib}"
    print(f"==> building a {args.size_mib} MiB claw home (cached in {home_src})", flush=True)
    archive_bench.build_home(home_src, args.size_mib)

    port = free_port()
    cf_proc = subprocess.Popen([sys.executable, str(REPO / "tests/cfapi/server.py"), "--port", str(port)], env=dict(os.environ, CFAPI_TOKEN=CF_TOKEN),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    s3 = None
    try:
        wait_http(f"http://127.0.0.1:{port}/__control/state")
        cf = CloudflareStandIn("127.0.0.1", port)
        zone_id = cf.add_zone("example.com")
        print(f"==> booting sandbox Minis {', '.join(MINIS)}", flush=True)
        subprocess.run([*MINI_PY, "down", *MINIS, "--purge"], check=True)
        import yaml
        hosts = yaml.safe_load(subprocess.run([*MINI_PY, "up", *MINIS], check=True, capture_output=True, text=True).stdout)["minis"]["hosts"]
        s3 = S3StandIn(hosts[MINIS[0]]["ansible_host"].rsplit(".", 1)[0] + ".1", work)
        s3.start()
        base = e2e.farm_vars(cf, "", zone_id, s3)
        group_vars = {k: v for k, v in base.items() if k not in ("cf_tunnel_id", "cloudflared_credentials")}
        for name in MINIS:
            tunnel_id = str(uuid.uuid4())
            hosts[name].update(cf_tunnel_id=tunnel_id, cloudflared_credentials=dict(base["cloudflared_credentials"], TunnelID=tunnel_id))
        inventory = work / "hosts.yml"
        inventory.write_text(json.dumps({"all": {"children": {"minis": {"hosts": hosts, "vars": group_vars}}}}))
        print("==> bootstrap and provision", flush=True)
        playbook(inventory, "bootstrap")
        claw_id = str(uuid.uuid4())
        user = f"claw-{claw_id[:8]}"
        playbook(inventory, "provision", "-e", f"claw_id={claw_id}", "-e", f"mini={MINIS[0]}")
        subprocess.run([*MINI_PY, "exec", MINIS[0], "--", "sh", "-c",
                        f"cp -a {home_src} /Users/{user}/.openclaw/workspace/data && chown -R {user} /Users/{user}/.openclaw/workspace/data"],
                       check=True)
        print(f"==> migrating a claw with a {args.size_mib} MiB home: pre-copy {MINIS[0]} -> {MINIS[1]}, then archive back", flush=True)
        precopy = migrate(inventory, claw_id, MINIS[1], "rsync")
        archive = migrate(inventory, claw_id, MINIS[0], "archive")
        print(f"\n{'method':<10} {'downtime s':>11} {'total s':>9}  bytes moved")
        for row in (precopy, archive):
            print(f"{row['method']:<10} {row['downtime_s']:>11.2f} {row['total_s']:>9.2f}  {row['bytes']}")
        print(f"\nratios (archive / pre-copy): downtime {archive['downtime_s'] / max(precopy['downtime_s'], 0.01):.2f}x, "
              f"total {archive['total_s'] / max(precopy['total_s'], 0.01):.2f}x")
    finally:
        if s3:
            s3.stop()
        cf_proc.terminate()
        subprocess.run([*MINI_PY, "down", *MINIS, "--purge"], check=False)


if __name__ == "__main__":
    main()
