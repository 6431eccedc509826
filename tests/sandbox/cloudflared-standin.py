#!/usr/bin/python3
"""Stand-in for the cloudflared connector on sandbox Minis (no real binary can be had there, and no network).

Accepts the command lines the cloudflared role builds:
    cloudflared --no-autoupdate --config FILE tunnel [flags] run
    cloudflared --no-autoupdate tunnel [flags] run --token-file FILE
Like cloudflared it reads config.yml once at start and never reloads it (a changed file needs a restart).
It validates the ingress list the way cloudflared does (last rule a catch-all, no catch-all before it) and
exits 1 with cloudflared's message when invalid. Then it records what it loaded in
/var/run/cloudflared-standin.json ({"pid", "started", "ingress"}) so tests can see which configuration the
running connector has, and idles until SIGTERM (exit 0). It opens no sockets.
"""
import json
import os
import signal
import sys
import time


def main(argv):
    config = argv[argv.index("--config") + 1] if "--config" in argv else None
    ingress = []
    if config:
        with open(config) as handle:
            text = handle.read()
        try:
            doc = json.loads(text)
        except ValueError:
            import yaml
            doc = yaml.safe_load(text)
        ingress = doc.get("ingress") or []
        for index, rule in enumerate(ingress):
            catch_all = rule.get("hostname") in (None, "", "*") and not rule.get("path")
            if catch_all and index != len(ingress) - 1:
                print(f"Validation failed: Rule #{index + 1} is matching every hostname", file=sys.stderr)
                return 1
        if not ingress or ingress[-1].get("hostname") not in (None, "", "*"):
            print("Validation failed: The last ingress rule must match all URLs", file=sys.stderr)
            return 1
    state = {"pid": os.getpid(), "started": time.time(), "ingress": ingress}
    with open("/var/run/cloudflared-standin.json.tmp", "w") as handle:
        json.dump(state, handle)
    os.replace("/var/run/cloudflared-standin.json.tmp", "/var/run/cloudflared-standin.json")
    print(f"cloudflared stand-in: pid {os.getpid()}, {len(ingress)} ingress rules", file=sys.stderr, flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
