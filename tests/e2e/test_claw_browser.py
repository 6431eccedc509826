"""A browser per claw (issue 16, docs/browser.md) on a sandbox Mini: real gateways, real Chromium.

Two claws drive their own browsers at the same time the way an agent does: the ``openclaw browser`` CLI run as the
claw's user (it reads the claw's config and token from its state dir and talks to its own gateway), which opens a page
served inside the Mini, lists its title and takes a screenshot. Chromium runs as the claw's user with its profile in
the claw's state dir and Chromium's own sandbox on (never ``--no-sandbox``; in the sandbox Mini, whose root is a
chroot, that is Debian's setuid ``chrome-sandbox``, tests/sandbox/README.md); the two browsers' ports are disjoint
and each one's CDP port is refused to the other claw. The tests run in file order and share the two claws.
"""
from __future__ import annotations

import json
import re
import shlex
from concurrent.futures import ThreadPoolExecutor

import pytest

A = "a11ce0e2-b705-4c1a-9d2b-000000000016"
B = "b0b0e0e2-b705-4c1a-9d2b-000000000016"
USER = {A: "claw-a11ce0e2", B: "claw-b0b0e0e2"}
PAGE_PORT = 18080  # outside every slot's port family: reachable by every user, like a site on the internet
TITLE = "Clawfarm browser test"
CONNECT = ("/usr/bin/python3 -c 'import socket\n"
           "try:\n    socket.create_connection((\"127.0.0.1\", {port}), timeout=3).close(); print(\"connected\")\n"
           "except OSError as exc:\n    print(type(exc).__name__)'")


def home(claw: str) -> str:
    return f"/Users/{USER[claw]}"


def openclaw(mini, claw: str, *args: str, timeout: int = 120) -> dict:
    """``openclaw browser --json ARGS`` as the claw's user, with the claw's environment (its state dir and token).

    The CLI's own request timeout (``--timeout``, default 30 s) is set to the outer ``timeout`` less the 10 s the CLI
    keeps for its transport. ``start`` honours it; ``open`` and ``tabs`` do not (OpenClaw 2026.9 fixes their budget at
    45 s, browser-cli-manage), so a caller starts the browser first: its lazy start takes longer than that when the
    suite's other lane loads the machine (the request was aborted: "AbortError: This operation was aborted").
    """
    program = re.search(r"program = (\S+)", mini.sh(f"launchctl print system/com.mirascope.claw.{claw}").stdout).group(1)
    entry = program.rsplit("/bin/node", 1)[0] + "/lib/node_modules/openclaw/openclaw.mjs"
    state = f"{home(claw)}/.openclaw"
    command = (f"cd {home(claw)} && exec env -i HOME={home(claw)} USER={USER[claw]} PATH={program.rsplit('/', 1)[0]}:/usr/bin:/bin "
               f"OPENCLAW_STATE_DIR={state} TMPDIR={state}/tmp XDG_CACHE_HOME={state}/cache "
               f"timeout {timeout} {program} {entry} browser --json --timeout {(timeout - 15) * 1000} "
               f"{' '.join(shlex.quote(a) for a in args)}")
    result = mini.sh(f"su -s /bin/sh {USER[claw]} -c {shlex.quote(command)}", check=False)
    assert result.returncode == 0, f"openclaw browser {' '.join(args)} as {USER[claw]}: {result.stdout[-2000:]}{result.stderr[-2000:]}"
    return json.loads(result.stdout[result.stdout.index("{"):])


def processes(mini, user: str) -> list[dict]:
    out = mini.sh(f"ps -u {user} -o pid=,ppid=,args= ww").stdout
    return [{"pid": int(p), "ppid": int(pp), "args": args} for p, pp, args in (line.split(None, 2) for line in out.splitlines())]


def status(mini, claw: str) -> dict:
    result = mini.playbook("status", "-e", f"claw_id={claw}", check=True)
    block = result.stdout.split("Show the claw's status", 1)[-1]
    return {k.strip(): v.strip().strip("'") for k, v in (line.split(": ", 1) for line in block.splitlines()
                                                          if ": " in line and line.startswith("        "))}


@pytest.fixture(scope="module")
def claws(mini):
    mini.sh(f"mkdir -p /tmp/browser-page && printf '<html><head><title>{TITLE}</title></head><body><h1>hello claw</h1></body></html>' "
            "> /tmp/browser-page/index.html")
    mini.sh(f"cd /tmp/browser-page && setsid /usr/bin/python3 -m http.server {PAGE_PORT} --bind 127.0.0.1 </dev/null >/dev/null 2>&1 &")
    # The page is on the Mini's loopback, a private address the claws' browsers refuse by default (OpenClaw's SSRF
    # policy): the claws are provisioned with it allowed, as a farm would allow a private host it trusts.
    allowed = json.dumps({"claw_browser_allowed_hostnames": ["127.0.0.1"]})
    with ThreadPoolExecutor(2) as pool:
        for result in pool.map(lambda c: mini.playbook("provision", "-e", f"claw_id={c}", "-e", allowed, check=True), (A, B)):
            assert "health ok" in result.stdout.replace("\n        ", " ")
    yield mini
    mini.sh(f"pkill -f 'http.server {PAGE_PORT}'", check=False)
    for claw in (A, B):
        mini.playbook("deprovision", "-e", f"claw_id={claw}", "-e", "archive=false", "-e", "claw_purge_home=true", check=False)


def test_each_claws_config_names_the_farms_browser_sandboxed_on_its_own_cdp_port(claws):
    ports = {}
    for claw in (A, B):
        config = json.loads(claws.sh(f"cat {home(claw)}/.openclaw/openclaw.json").stdout)
        browser = config["browser"]
        assert browser["executablePath"] == "/usr/bin/chromium" and browser["noSandbox"] is False and browser["headless"] is True
        assert browser["defaultProfile"] == "openclaw"
        ports[claw] = (config["gateway"]["port"], browser["profiles"]["openclaw"]["cdpPort"])
        assert ports[claw][1] == ports[claw][0] + 11
    (gw_a, _), (gw_b, _) = ports[A], ports[B]
    assert abs(gw_a - gw_b) >= 128, ports  # disjoint families: gateway .. gateway + 110
    status_a = status(claws, A)
    assert status_a["browser"] == "not running"  # lazily started: nothing before the first use


def test_two_claws_drive_their_browsers_at_once(claws):
    url = {claw: f"http://127.0.0.1:{PAGE_PORT}/?claw={claw[:8]}" for claw in (A, B)}

    def drive(claw):
        openclaw(claws, claw, "start")  # the lazy start under --timeout; open's own budget is a fixed 45 s
        opened = openclaw(claws, claw, "open", url[claw])
        tabs = openclaw(claws, claw, "tabs")["tabs"]
        shot = openclaw(claws, claw, "screenshot")
        return opened, tabs, shot

    with ThreadPoolExecutor(2) as pool:
        results = dict(zip((A, B), pool.map(drive, (A, B)), strict=True))
    for claw, (opened, tabs, shot) in results.items():
        assert opened["url"] == url[claw] and opened["resolvedProfile"] == "openclaw"
        assert [t["title"] for t in tabs if t["url"] == url[claw]] == [TITLE], tabs
        assert not [t for t in tabs if "claw=" in t["url"] and t["url"] != url[claw]], "a claw sees the other's tab"
        path = shot["path"]
        assert path.startswith(f"{home(claw)}/.openclaw/") and shot["ok"]
        assert claws.sh(f"head -c 8 {shlex.quote(path)} | od -An -c").stdout.split()[1:4] == ["P", "N", "G"]
        assert claws.sh(f"stat -c %U {shlex.quote(path)}").stdout.strip() == USER[claw]


def test_chromium_runs_as_the_claw_with_its_profile_and_its_sandbox(claws):
    cdp = {}
    for claw in (A, B):
        procs = processes(claws, USER[claw])
        profile = f"--user-data-dir={home(claw)}/.openclaw/browser/openclaw/user-data"
        mains = [p for p in procs if profile in p["args"] and "--type=" not in p["args"]]
        assert len(mains) == 1, procs
        main = mains[0]
        cdp[claw] = int(re.search(r"--remote-debugging-port=(\d+)", main["args"]).group(1))
        for p in procs:
            assert "--no-sandbox" not in p["args"].split(), p
        # Chromium's sandbox is on: its renderers run in a PID namespace of their own (setuid or namespace sandbox).
        renderers = [p for p in procs if "--type=renderer" in p["args"]]
        assert renderers, procs
        ns = {p: claws.sh(f"readlink /proc/{p}/ns/pid").stdout.strip() for p in (main["pid"], renderers[0]["pid"])}
        assert ns[main["pid"]] != ns[renderers[0]["pid"]], ns
        # Nothing of the browser runs as anyone but the claw.
        assert not [p for p in processes(claws, "root") if profile in p["args"]]
        # claw_status (status.yml, the API's claw record) reports the browser's pid.
        assert status(claws, claw)["browser"] == f"running, chromium pid {main['pid']}"
    assert cdp[A] != cdp[B]
    for claw, other in ((A, B), (B, A)):
        own = claws.sh(f"su -s /bin/sh {USER[claw]} -c {shlex.quote(CONNECT.format(port=cdp[claw]))}").stdout.strip()
        theirs = claws.sh(f"su -s /bin/sh {USER[claw]} -c {shlex.quote(CONNECT.format(port=cdp[other]))}").stdout.strip()
        assert (own, theirs) == ("connected", "ConnectionRefusedError"), (claw, own, theirs)


def test_health_counts_each_claws_browser_memory_and_stop_ends_it(claws):
    sample = claws.playbook("health", check=True).stdout
    assert re.search(r"browser pid \d+ rss \d+ MiB", sample), sample[-3000:]
    openclaw(claws, A, "stop")
    profile = f"--user-data-dir={home(A)}/.openclaw/browser/openclaw/user-data"
    claws.sh(f"for i in $(seq 50); do ps -u {USER[A]} -o args= ww | grep -qF -- {shlex.quote(profile)} || exit 0; sleep 0.2; done; exit 1")
    assert status(claws, A)["browser"] == "not running"
    assert status(claws, B)["browser"].startswith("running")


def test_the_browser_ends_with_its_gateway(claws):
    profile = f"--user-data-dir={home(B)}/.openclaw/browser/openclaw/user-data"
    assert profile in claws.sh(f"ps -u {USER[B]} -o args= ww").stdout
    claws.playbook("stop", "-e", f"claw_id={B}", check=True)
    assert profile not in claws.sh(f"ps -u {USER[B]} -o args= ww", check=False).stdout
    claws.playbook("start", "-e", f"claw_id={B}", check=True)
    assert status(claws, B)["browser"] == "not running"  # lazily started again at the next use
