"""Seed an installed OpenClaw runtime's V8 compile cache: one warm-up start of its gateway (docs/gateway-start-gate.md).

Runs on the Mini as root, with the Mini's Python (3.9, standard library only), from the openclaw_runtime role once per
runtime install (``creates: <prefix>/compile-cache``):

    seed_compile_cache.py --prefix PREFIX --workdir DIR --config-b64 B64 [--user nobody] [--timeout 180]

PREFIX is the runtime (``PREFIX/bin/node``, ``PREFIX/lib/node_modules/openclaw/openclaw.mjs``); DIR a directory made
here, root-owned, under the runtime root (never under a world-writable directory a tenant could plant a link in), and
removed at the end; B64 the base64 of a claw's ``openclaw.json`` for state dir ``DIR/state`` (the role renders it with
the collection's ``claw_gateway_config``), whose ``gateway.port`` is replaced here by a free loopback port.

The gateway is started as USER (an unprivileged system account, never root and never a claw: its files are nobody's
to tamper with) with the environment of a claw's launchd job (a fresh state dir, ``TMPDIR`` inside it, a random token
in its environment, never in argv), until its ``/readyz`` answers 200, then stopped with SIGTERM (Node.js writes the
cache as the process exits). OpenClaw's launcher keeps the cache in
``$TMPDIR/node-compile-cache/openclaw/<version>/<install>/``, where Node.js names its directory
``<version>-<arch>-<V8 tag>-<uid>``: that directory is copied, regular files only, read with ``O_NOFOLLOW``, into
``PREFIX/compile-cache`` (root, 0755 directories, 0644 files) through a staging directory renamed into place. The
claws' start gate copies it into a claw's own cache on its first start, which then compiles far less of OpenClaw.

Prints one JSON line: ``{"seeded": bool, "entries": int, "seconds": float, "reason": str}``. A warm-up that fails
(the gateway exits, never gets ready, the cache is empty) seeds nothing and says why, exit status 0: the runtime works
without a seed (its claws' first starts compile everything), and the next run of the role tries again.
"""
import argparse
import base64
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request

SEED_NAME = "compile-cache"
TOKEN_VAR = "CLAW_GATEWAY_TOKEN"


def free_port():
    """A loopback TCP port nothing listens on now (int)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ready(port):
    """True when the gateway on ``port`` answers ``/readyz`` with 200 (plain HTTP, loopback)."""
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/readyz" % port, timeout=2) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


def copy_cache(source, target):
    """Copy the regular files of directory ``source`` into new directory ``target`` (root, 0755; files 0644).

    Nothing is followed: ``source`` is opened with O_NOFOLLOW|O_DIRECTORY, each entry with O_NOFOLLOW relative to it,
    and only what fstat shows as a regular file is copied. Returns the number of files copied.
    """
    os.mkdir(target, 0o755)
    dir_fd = os.open(source, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    copied = 0
    try:
        for name in os.listdir(dir_fd):
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0), dir_fd=dir_fd)
            except OSError:
                continue  # a link, or gone
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                continue
            with os.fdopen(fd, "rb") as source_file:
                out = os.open(os.path.join(target, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
                with os.fdopen(out, "wb") as target_file:
                    shutil.copyfileobj(source_file, target_file)
                os.chmod(os.path.join(target, name), 0o644)
                copied += 1
    finally:
        os.close(dir_fd)
    return copied


def warm_up(args, account, started):
    """Start the gateway as ``account`` until ready, stop it; returns (cache directory made by Node.js, reason)."""
    workdir = args.workdir
    state = os.path.join(workdir, "state")
    for path in (state, os.path.join(state, "workspace"), os.path.join(state, "logs"), os.path.join(state, "tmp"),
                 os.path.join(state, "cache")):
        os.mkdir(path, 0o700)
        os.chown(path, account.pw_uid, account.pw_gid)
    config = json.loads(base64.b64decode(args.config_b64).decode("utf-8"))
    port = free_port()
    config["gateway"]["port"] = port
    config_path = os.path.join(state, "openclaw.json")
    with open(os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as handle:
        json.dump(config, handle)
    os.chown(config_path, account.pw_uid, account.pw_gid)
    node = os.path.join(args.prefix, "bin", "node")
    entry = os.path.join(args.prefix, "lib", "node_modules", "openclaw", "openclaw.mjs")
    env = {"HOME": state, "USER": account.pw_name, "LOGNAME": account.pw_name, "SHELL": "/bin/sh",
           "PATH": os.path.join(args.prefix, "bin") + ":/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "en_US.UTF-8",
           "TMPDIR": os.path.join(state, "tmp"), "XDG_CACHE_HOME": os.path.join(state, "cache"),
           "OPENCLAW_STATE_DIR": state, "OPENCLAW_SUPERVISOR_MODE": "external",
           "OPENCLAW_DISABLE_BONJOUR": "1", "OPENCLAW_NO_AUTO_UPDATE": "1", TOKEN_VAR: secrets.token_urlsafe(32)}

    def drop():
        os.setsid()
        os.setgid(account.pw_gid)
        os.setgroups([account.pw_gid])
        os.setuid(account.pw_uid)

    gateway = subprocess.Popen([node, entry, "gateway", "run"], env=env, cwd=state, preexec_fn=drop,
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    reason = ""
    try:
        while not ready(port):
            if gateway.poll() is not None:
                reason = "the warm-up gateway exited with status %s before it was ready" % gateway.returncode
                break
            if time.monotonic() - started > args.timeout:
                reason = "the warm-up gateway was not ready within %d s" % args.timeout
                break
            time.sleep(0.2)
    finally:
        if gateway.poll() is None:
            os.killpg(gateway.pid, signal.SIGTERM)  # Node.js writes the compile cache as it exits
            try:
                gateway.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(gateway.pid, signal.SIGKILL)
                gateway.wait()
                reason = reason or "the warm-up gateway did not stop within 30 s of SIGTERM"
        try:
            os.killpg(gateway.pid, signal.SIGKILL)  # what it left running in its session
        except (ProcessLookupError, PermissionError):
            pass
    made = cache_directories(os.path.join(state, "tmp", "node-compile-cache", "openclaw"), account.pw_uid)
    if not reason and len(made) != 1:
        reason = "OpenClaw left %d compile cache directories of uid %d (expected one)" % (len(made), account.pw_uid)
    return (made[0] if len(made) == 1 and not reason else None), reason


def cache_directories(root, uid):
    """The directories ``root/<version>/<install>/<...>-<uid>`` (real directories, never links): a list of paths."""
    found = []
    for version in _subdirectories(root):
        for install in _subdirectories(version):
            found += [path for path in _subdirectories(install) if path.endswith("-%d" % uid)]
    return found


def _subdirectories(path):
    """Real subdirectories of ``path`` (lstat: links are not followed), or [] when it is not a directory."""
    try:
        names = os.listdir(path)
    except OSError:
        return []
    return [os.path.join(path, name) for name in sorted(names) if stat.S_ISDIR(os.lstat(os.path.join(path, name)).st_mode)]


def main():
    parser = argparse.ArgumentParser(description="Seed an installed OpenClaw runtime's V8 compile cache (one warm-up start).")
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--config-b64", required=True)
    parser.add_argument("--user", default="nobody")
    parser.add_argument("--timeout", type=int, default=180)
    args = parser.parse_args()
    started = time.monotonic()
    account = pwd.getpwnam(args.user)
    if account.pw_uid == 0:
        sys.exit("seed_compile_cache.py: --user must not be root")
    seed = os.path.join(args.prefix, SEED_NAME)
    staging = os.path.join(args.prefix, "." + SEED_NAME + "-staging")
    result = {"seeded": False, "entries": 0, "reason": ""}
    if os.path.lexists(args.workdir):
        shutil.rmtree(args.workdir)  # a run that was cut off (root-owned, under the runtime root)
    os.mkdir(args.workdir, 0o755)
    try:
        made, result["reason"] = warm_up(args, account, started)
    except Exception as error:  # pylint: disable=broad-exception-caught  # a seed is an optimisation: say why, fail nothing
        made, result["reason"] = None, "the warm-up failed: %s: %s" % (type(error).__name__, error)
    try:
        if made:
            if os.path.lexists(staging):
                shutil.rmtree(staging)
            os.mkdir(staging, 0o755)
            entries = copy_cache(made, os.path.join(staging, os.path.basename(made)))
            if entries == 0:
                result["reason"] = "the warm-up's compile cache is empty"
            else:
                os.rename(staging, seed)
                result.update(seeded=True, entries=entries)
    except OSError as error:
        result["reason"] = "copying the warm-up's compile cache failed: %s" % error
    finally:
        shutil.rmtree(args.workdir, ignore_errors=True)
        if os.path.lexists(staging):
            shutil.rmtree(staging, ignore_errors=True)
    result["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
