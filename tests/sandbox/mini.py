#!/usr/bin/env python3
"""Bring sandbox Mac Minis up and down.

    python3 tests/sandbox/mini.py up NAME... [--inventory FILE] # boot (first boot creates it); several boot at once
    python3 tests/sandbox/mini.py down NAME [--purge]          # shut down (--purge deletes its disk)
    python3 tests/sandbox/mini.py reboot NAME                  # down + up, disk kept
    python3 tests/sandbox/mini.py inventory NAME               # print its inventory entry
    python3 tests/sandbox/mini.py exec NAME -- CMD...          # run a command inside, as root
    python3 tests/sandbox/mini.py python                       # the CPython 3.9 Minis run (exit 1 if none)
    python3 tests/sandbox/mini.py image NAME KEY               # save a Mini's disk (it must be down) as image KEY
    python3 tests/sandbox/mini.py up NAME... --image DIR       # a new Mini's disk starts as that image

An image is the disk (overlay upper directory) of a Mini that was set up once (the tests bootstrap one), minus
what makes a Mini itself (SSH host key, admin key), kept in memory: a tmpfs at ``/run/clawfarm-sandbox-images``
(``CLAWFARM_SANDBOX_IMAGES``; overlayfs refuses a lower layer inside another one, the host's ``/``). A Mini created
with ``--image`` mounts it as a read-only layer between its own disk and the host's ``/``, as a copy of a disk
image would start: booting one costs nothing, and every Mini made from it shares it (an image never changes; a
new one is saved under a new key). ``umount /run/clawfarm-sandbox-images`` frees the memory once no Mini uses one.

A Mini is a network namespace ``cf-NAME`` (veth ``cfh-NAME`` on the host side, host
10.77.N.1, Mini 10.77.N.2) plus mount, PID and UTS namespaces whose root is an overlayfs
over the host's ``/`` (its disk: tests/sandbox/run/NAME/upper).  PID 1 inside is the
launchd stand-in, which also runs sshd.  Needs root.

Minis reach each other (rsync over SSH when a claw migrates): each Mini routes 10.77.0.0/16 through its
host side and the host forwards between the veths.  Nothing else is routed: no default route, no NAT.

A Mini's ``/usr/bin/python3`` is a CPython 3.9, as a Mac's is (the Command Line Tools' Python): the highest
``$(pyenv root)/versions/3.9.*`` on this machine (or the prefix in ``CLAWFARM_MINI_PYTHON``), copied once to
``run/python3.9`` (made relocatable: its ``RUNPATH`` becomes ``$ORIGIN/../lib``, so claw users never need the
host's ``/root``) and mounted read-only at the Command Line Tools' framework path in every Mini.
"""
from __future__ import annotations

import argparse
import fcntl
import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RUN = os.environ.get("CLAWFARM_SANDBOX_RUN", os.path.join(HERE, "run"))
SUBNET = "10.77"
MINI_PYTHON = "3.9"  # the Command Line Tools' CPython on every macOS the farm supports
IMAGES = os.environ.get("CLAWFARM_SANDBOX_IMAGES", "/run/clawfarm-sandbox-images")
IMAGE_KEEP_HOURS = 6
INDEX_LOCK = "/run/lock/clawfarm-mini-index.lock" if os.path.isdir("/run/lock") else "/tmp/clawfarm-mini-index.lock"
INDEX_REGISTRY = "/run/clawfarm-mini-indexes" if os.path.isdir("/run") else "/tmp/clawfarm-mini-indexes"


def sh(*argv, check=True, **kw):
    return subprocess.run(list(argv), check=check, text=True, capture_output=True, **kw)


def paths(name: str) -> dict:
    base = os.path.join(RUN, name)
    return {k: os.path.join(base, v) for k, v in {
        "base": "", "upper": "upper", "work": "work", "root": "root", "pid": "pid", "index": "index",
        "key": "admin_ed25519", "known_hosts": "known_hosts", "console": "console.log", "image": "image"}.items()}


def index_of(name: str) -> int:
    p = paths(name)
    if os.path.exists(p["index"]):
        return int(open(p["index"]).read())
    # Unique on the machine, not just in this checkout: addresses already on the host count too. Several processes
    # boot Minis at once (pytest-xdist workers), so the choice is made under a machine-wide lock.
    with open(INDEX_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(p["index"]):
            return int(open(p["index"]).read())
        used = {int(m) for m in re.findall(rf"inet {re.escape(SUBNET)}\.(\d+)\.1/", sh("ip", "-o", "-4", "addr").stdout)}
        for other in os.listdir(RUN) if os.path.isdir(RUN) else []:
            f = os.path.join(RUN, other, "index")
            if os.path.exists(f):
                used.add(int(open(f).read()))
        # Minis of other checkouts that are down (or not up yet) hold their index too: each index taken is noted in
        # a machine-wide registry with the index file that holds it, valid while that file still says so.
        os.makedirs(INDEX_REGISTRY, exist_ok=True)
        for entry in os.listdir(INDEX_REGISTRY):
            try:
                with open(os.path.join(INDEX_REGISTRY, entry)) as handle:
                    holder = handle.read().strip()
                if entry.isdigit() and int(open(holder).read()) == int(entry):
                    used.add(int(entry))
            except (OSError, ValueError):
                pass
        index = next(i for i in range(1, 250) if i not in used)
        with open(p["index"] + ".tmp", "w") as handle:
            handle.write(str(index))
        os.replace(p["index"] + ".tmp", p["index"])
        with open(os.path.join(INDEX_REGISTRY, str(index)), "w") as handle:
            handle.write(os.path.abspath(p["index"]))
        return index


def address(name: str) -> str:
    return f"{SUBNET}.{index_of(name)}.2"


def init_pid(name: str):
    """Host PID of the Mini's PID 1 (the launchd stand-in), or None."""
    p = paths(name)
    try:
        outer = int(open(p["pid"]).read())
        children = open(f"/proc/{outer}/task/{outer}/children").read().split()
        return int(children[0]) if children else outer
    except (OSError, ValueError):
        return None


def is_up(name: str) -> bool:
    pid = init_pid(name)
    return pid is not None and os.path.exists(f"/proc/{pid}")


def find_mini_python() -> str:
    """Prefix of the CPython 3.9 a Mini runs as /usr/bin/python3; exits with the fix when there is none."""
    explicit = os.environ.get("CLAWFARM_MINI_PYTHON")
    if explicit:
        candidates = [explicit]
        looked_at = f"CLAWFARM_MINI_PYTHON={explicit}"
    else:
        root = os.environ.get("PYENV_ROOT")
        if not root and shutil.which("pyenv"):
            root = sh("pyenv", "root", check=False).stdout.strip()
        root = root or os.path.expanduser("~/.pyenv")

        def version(prefix):
            parts = os.path.basename(prefix).split(".")
            return tuple(int(x) for x in parts) if all(x.isdigit() for x in parts) else ()
        candidates = sorted((c for c in glob.glob(os.path.join(root, "versions", MINI_PYTHON + ".*")) if version(c)),
                            key=version, reverse=True)
        looked_at = ", ".join(candidates) or os.path.join(root, "versions", MINI_PYTHON + ".*")
    for prefix in candidates:
        exe = os.path.join(prefix, "bin", "python" + MINI_PYTHON)
        if os.access(exe, os.X_OK) and sh(exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2])",
                                          check=False).stdout.strip() == MINI_PYTHON:
            return os.path.realpath(prefix)
    sys.exit(f"no CPython {MINI_PYTHON} for the sandbox Minis' /usr/bin/python3 (a Mac's Command Line Tools Python is "
             f"{MINI_PYTHON}): looked at {looked_at}. Install one with "
             f"`pyenv install {MINI_PYTHON}` or point CLAWFARM_MINI_PYTHON at a {MINI_PYTHON} prefix "
             "(scripts/setup.sh checks this).")


# Bump when the copy's contents change (a copy with another marker is made again).
PYTHON_COPY_VERSION = "\ncopy 4: ssl held to TLS 1.2 when it is imported; root's zip imports compiled once"
LIBRESSL_LIKE_SSL = '''"""Sandbox only (tests/sandbox/README.md "Python on the Mini"): a Mac's /usr/bin/python3 links LibreSSL 2.8.3,
which has no TLS 1.3. This copy links OpenSSL 3: every SSLContext is held to TLS 1.2, as on a Mac.

The hold is put on ssl when something imports it, not at start-up: importing ssl costs a Python process about 30 ms
of CPU, and most of the Mini's Python processes (Ansible's module calls) never use it."""
import sys
from importlib.machinery import PathFinder


def _hold_to_tls_1_2(ssl):
    ssl.HAS_TLSv1_3 = False
    new = ssl.SSLContext.__new__

    def _libressl_2_8(cls, *args, **kwargs):
        context = new(cls, *args, **kwargs)
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        return context

    ssl.SSLContext.__new__ = _libressl_2_8


class _SslHold:
    """A meta path finder that finds ssl as the path finder does and holds it to TLS 1.2 once it is executed."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name != "ssl":
            return None
        spec = PathFinder.find_spec(name, path, target)
        if spec is not None and spec.loader is not None:
            execute = spec.loader.exec_module

            def exec_module(module):
                execute(module)
                _hold_to_tls_1_2(module)
            spec.loader.exec_module = exec_module
        return spec


if "ssl" in sys.modules:
    _hold_to_tls_1_2(sys.modules["ssl"])
else:
    sys.meta_path.insert(0, _SslHold)
'''

# Holds "1" on a Mini booted with the module code cache (mini.py up; CLAWFARM_SANDBOX_CODE_CACHE=0 boots one without).
CODE_CACHE_MARKER = "/etc/sandbox/module-code-cache"
ZIPIMPORT_CODE_CACHE = '''
# Sandbox only (tests/sandbox/README.md "Python on the Mini"): Ansible runs each module from a zip in a new temporary
# directory (AnsiballZ), and Python compiles every module_utils file imported from a zip again (zipimport writes no
# .pyc): about 0.2 s of CPU per module call, half of it, and a third of the Mini-side CPU of the e2e suite. On a Mini
# booted with the marker below, root's zip imports keep each compiled file in a root-only directory, keyed by the
# source's hash, and reuse it with the file name of the import at hand (tracebacks read the same). Nothing else
# changes: what runs is what the source compiles to. Off on Minis the benchmarks boot (bench/), which stand for a Mac.
import os as _os


def _cache_zip_compiles(cache="/var/cache/sandbox-zipimport", marker=%r):
    import zipimport
    try:
        with open(marker) as handle:
            if _os.geteuid() != 0 or handle.read(1) != "1":
                return
    except OSError:
        return
    compile_source = zipimport._compile_source

    def refile(code, filename):
        consts = tuple(refile(c, filename) if isinstance(c, type(code)) else c for c in code.co_consts)
        return code.replace(co_filename=filename, co_consts=consts)

    def cached_compile_source(pathname, source):
        import hashlib
        import marshal
        key = _os.path.join(cache, hashlib.sha256(source).hexdigest())
        try:
            fd = _os.open(key, _os.O_RDONLY | _os.O_NOFOLLOW)
            with _os.fdopen(fd, "rb") as handle:
                info = _os.fstat(handle.fileno())
                if info.st_uid == 0 and not info.st_mode & 0o022:
                    return refile(marshal.loads(handle.read()), pathname)
        except (OSError, ValueError, EOFError, TypeError):
            pass
        code = compile_source(pathname, source)
        try:
            _os.makedirs(cache, mode=0o700, exist_ok=True)
            tmp = "%%s.%%d" %% (key, _os.getpid())
            with open(_os.open(tmp, _os.O_WRONLY | _os.O_CREAT | _os.O_EXCL | _os.O_NOFOLLOW, 0o600), "wb") as handle:
                handle.write(marshal.dumps(code))
            _os.rename(tmp, key)
        except OSError:
            pass
        return code

    zipimport._compile_source = cached_compile_source


_cache_zip_compiles()
''' % CODE_CACHE_MARKER
# The copy's sitecustomize.py.
MINI_SITECUSTOMIZE = LIBRESSL_LIKE_SSL + ZIPIMPORT_CODE_CACHE


def mini_python() -> str:
    """The shared read-only copy of the Mini's CPython 3.9 (run/python3.9), made on first use; returns its path."""
    source = find_mini_python()
    dest = os.path.join(RUN, "python" + MINI_PYTHON)
    marker = os.path.join(dest, ".clawfarm-source")
    os.makedirs(RUN, exist_ok=True)
    with open(os.path.join(RUN, ".python.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # several Minis boot at once
        if os.path.exists(marker) and open(marker).read() == source + PYTHON_COPY_VERSION:
            return dest
        if not shutil.which("patchelf"):
            sys.exit("patchelf is missing (it makes the Mini's Python relocatable): run scripts/setup.sh")
        stdlib = os.path.join(source, "lib", "python" + MINI_PYTHON)

        def ignore(directory, names):
            # No test suite (68 MB), no .pth start-up hooks of this machine: the Command Line Tools have neither.
            if os.path.realpath(directory) == stdlib:
                return {"test"}
            if os.path.realpath(directory) == os.path.join(stdlib, "site-packages"):
                return {n for n in names if n.endswith(".pth")}
            return set()
        tmp = f"{dest}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(source, tmp, symlinks=True, ignore=ignore)
        # Built --enable-shared with RUNPATH=<pyenv prefix>/lib: claw users cannot read /root, so load libpython
        # from the copy itself.
        sh("patchelf", "--set-rpath", "$ORIGIN/../lib", os.path.join(tmp, "bin", "python" + MINI_PYTHON))
        # A Mac's Command Line Tools CPython 3.9 links LibreSSL 2.8.3: no TLS 1.3. This build links OpenSSL 3, so its
        # ssl module is held to TLS 1.2 as on a Mac (the farm venv, made from it, too); what must speak TLS 1.3 (the
        # gateway probe) uses pyOpenSSL, as on a Mac.
        with open(os.path.join(tmp, "lib", "python" + MINI_PYTHON, "sitecustomize.py"), "w") as handle:
            handle.write(MINI_SITECUSTOMIZE)
        sh("chmod", "-R", "a+rX,go-w", tmp)
        check = sh(os.path.join(tmp, "bin", "python" + MINI_PYTHON), "-c", "import sys; print(sys.prefix)", check=False)
        if check.returncode != 0 or os.path.realpath(check.stdout.strip()) != os.path.realpath(tmp):
            sys.exit(f"the copy of {source} in {tmp} does not run on its own: {check.stdout}{check.stderr}")
        with open(os.path.join(tmp, ".clawfarm-source"), "w") as handle:
            handle.write(source + PYTHON_COPY_VERSION)
        if os.path.exists(dest):
            shutil.rmtree(dest)
        os.rename(tmp, dest)
        return dest


def network_up(name: str) -> None:
    ns, veth, idx = f"cf-{name}", f"cfh-{name}", index_of(name)
    if ns not in sh("ip", "netns", "list").stdout.split():
        sh("ip", "netns", "add", ns)
    if sh("ip", "link", "show", veth, check=False).returncode != 0:
        sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        sh("ip", "addr", "add", f"{SUBNET}.{idx}.1/24", "dev", veth)
        sh("ip", "link", "set", veth, "up")
        sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"{SUBNET}.{idx}.2/24", "dev", "eth0")
        sh("ip", "netns", "exec", ns, "ip", "link", "set", "eth0", "up")
        sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        # Mini-to-Mini traffic only: the other Minis' /24s through this Mini's host side (no default route).
        sh("ip", "netns", "exec", ns, "ip", "route", "add", f"{SUBNET}.0.0/16", "via", f"{SUBNET}.{idx}.1")
    with open("/proc/sys/net/ipv4/ip_forward") as handle:
        if handle.read().strip() != "1":
            with open("/proc/sys/net/ipv4/ip_forward", "w") as out:
                out.write("1\n")


# What makes a Mini itself, left out of an image (firstboot.py makes new ones at the first boot of each Mini).
IMAGE_EXCLUDES = ("etc/ssh/ssh_host_ed25519_key", "etc/ssh/ssh_host_ed25519_key.pub", "etc/sandbox/host-key-generated",
                  "etc/sandbox/admin_ed25519.pub", "Users/admin/.ssh/known_hosts")


IMAGE_ROOM_BYTES = 2 << 30  # free room kept in the image store before saving one (a bootstrapped Mini's disk: ~1 GiB)


def save_image(name: str, key: str) -> str:
    """Copy Mini ``name``'s disk (it must be down, and not itself made from an image) to the image store as image
    ``key`` (letters, digits, ``.-_``); returns the image's directory. Images of other keys that no Mini uses (of
    this checkout, or mounted by any) are deleted when saved more than IMAGE_KEEP_HOURS ago, or, oldest first, while
    the store has less than IMAGE_ROOM_BYTES free."""
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", key):
        sys.exit("image key: 1-64 characters of [A-Za-z0-9._-]")
    os.makedirs(IMAGES, mode=0o700, exist_ok=True)
    if not os.path.ismount(IMAGES):
        sh("mount", "-t", "tmpfs", "-o", "mode=0700,size=8g", "tmpfs", IMAGES)
    in_use = set()
    for other in os.listdir(RUN):
        try:
            with open(os.path.join(RUN, other, "image")) as handle:
                in_use.add(handle.read().strip())
        except OSError:
            pass
    mounts, namespaces = "", set()  # Minis of any checkout: an image is a lower layer of their root (in their namespace)
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            namespace = os.readlink(f"/proc/{pid}/ns/mnt")
            if namespace not in namespaces:
                namespaces.add(namespace)
                with open(f"/proc/{pid}/mounts") as handle:
                    mounts += handle.read()
        except OSError:
            pass
    in_use.update(os.path.join(IMAGES, other) for other in os.listdir(IMAGES) if os.path.join(IMAGES, other) + ":" in mounts)
    unused = sorted((os.stat(os.path.join(IMAGES, other)).st_mtime, os.path.join(IMAGES, other))
                    for other in os.listdir(IMAGES) if other != key and os.path.join(IMAGES, other) not in in_use)
    for saved, path in unused:
        # Old ones go; newer ones too, oldest first, while the store has less room than an image takes.
        if time.time() - saved > IMAGE_KEEP_HOURS * 3600 or shutil.disk_usage(IMAGES).free < IMAGE_ROOM_BYTES:
            shutil.rmtree(path, ignore_errors=True)
    dest = os.path.join(IMAGES, key)
    p = paths(name)
    if is_up(name):
        sys.exit(f"{name} is up: shut it down before saving its disk as an image")
    if os.path.exists(p["image"]):
        sys.exit(f"{name} was made from an image: its disk alone is not a whole Mini")
    tmp = dest.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    sh("cp", "-a", p["upper"], tmp)  # -a keeps owners, modes, xattrs and the overlay's whiteouts
    for relative in IMAGE_EXCLUDES:
        try:
            os.unlink(os.path.join(tmp, relative))
        except FileNotFoundError:
            pass
    shutil.rmtree(dest, ignore_errors=True)
    os.rename(tmp, dest)
    return dest


def up(name: str, image: str | None = None) -> None:
    if not re.fullmatch(r"[a-z][a-z0-9-]{0,10}", name):
        sys.exit("mini name: 1-11 characters of [a-z0-9-], starting with a letter")
    p = paths(name)
    if image and not os.path.exists(p["upper"]):  # only a new Mini starts from an image; later boots keep theirs
        if not os.path.isdir(image):
            sys.exit(f"image {image} does not exist (mini.py image NAME DIR saves one)")
        os.makedirs(p["base"], exist_ok=True)
        with open(p["image"], "w") as handle:
            handle.write(os.path.abspath(image))
    for d in ("upper", "work", "root"):
        os.makedirs(p[d], exist_ok=True)
    if is_up(name):
        print(f"{name} is already up at {address(name)}", file=sys.stderr)
        return
    if not os.path.exists(p["key"]):
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"admin@{name}", "-f", p["key"])
    os.makedirs(os.path.join(p["upper"], "etc", "sandbox"), exist_ok=True)
    with open(p["key"] + ".pub") as src, open(os.path.join(p["upper"], "etc", "sandbox", "admin_ed25519.pub"), "w") as dst:
        dst.write(src.read())
    # "1" or "0" (a file in the upper layer hides the image's): the module code cache of the Mini's Python.
    with open(os.path.join(p["upper"], CODE_CACHE_MARKER.lstrip("/")), "w") as marker:
        marker.write("0" if os.environ.get("CLAWFARM_SANDBOX_CODE_CACHE", "1") == "0" else "1")
    python = mini_python()
    network_up(name)
    console = open(p["console"], "a")
    env = {k: v for k, v in os.environ.items() if k not in ("INVOCATION_ID", "JOURNAL_STREAM", "SYSTEMD_EXEC_PID")}
    proc = subprocess.Popen(
        ["ip", "netns", "exec", f"cf-{name}", "unshare", "--mount", "--pid", "--uts", "--fork",
         "/bin/sh", os.path.join(HERE, "boot.sh"), name, p["base"], os.path.join(HERE, "macos"), python],
        stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    with open(p["pid"], "w") as handle:
        handle.write(str(proc.pid))
    wait_for_ssh(name, proc)


def wait_for_ssh(name: str, proc, timeout: float = 60) -> None:
    p = paths(name)
    deadline = time.monotonic() + timeout
    host_key = os.path.join(p["upper"], "etc", "ssh", "ssh_host_ed25519_key.pub")
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            sys.exit(f"{name} failed to boot; see {p['console']}")
        if os.path.exists(host_key):
            try:
                with socket.create_connection((address(name), 22), timeout=1) as conn:
                    if conn.recv(64).startswith(b"SSH-"):
                        key = open(host_key).read().split()
                        with open(p["known_hosts"], "w") as handle:
                            handle.write(f"{address(name)} {key[0]} {key[1]}\n")
                        return
            except OSError:
                pass
        time.sleep(0.2)
    sys.exit(f"{name}: sshd did not answer on {address(name)}:22 within {timeout:.0f} s; see {p['console']}")


def down(name: str, purge: bool = False, timeout: float = 60) -> None:
    p = paths(name)
    pid = init_pid(name)
    if pid and os.path.exists(f"/proc/{pid}"):
        os.kill(pid, signal.SIGTERM)  # launchd stand-in stops its jobs (SIGTERM, then SIGKILL after ExitTimeOut)
        deadline = time.monotonic() + timeout
        while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
            time.sleep(0.2)
        if os.path.exists(f"/proc/{pid}"):
            os.kill(pid, signal.SIGKILL)
    try:
        outer = int(open(p["pid"]).read())
        for _ in range(100):
            if not os.path.exists(f"/proc/{outer}") or open(f"/proc/{outer}/stat").read().split()[2] == "Z":
                break
            time.sleep(0.1)
        try:
            os.waitpid(outer, os.WNOHANG)
        except ChildProcessError:
            pass
        os.unlink(p["pid"])
    except (OSError, ValueError):
        pass
    if purge:
        sh("ip", "link", "del", f"cfh-{name}", check=False)
        sh("ip", "netns", "del", f"cf-{name}", check=False)
        sh("rm", "-rf", p["base"])


def up_many(names: list, image: str | None = None) -> None:
    """Boot several Minis at once (each boot waits for its sshd); raises if any failed."""
    import threading
    errors = {}

    def boot(name):
        try:
            up(name, image)
        except BaseException as exc:  # sys.exit in a thread must not vanish silently
            errors[name] = exc
    for name in names:  # addresses first, one at a time: two boots must not pick the same free index
        os.makedirs(paths(name)["base"], exist_ok=True)
        index_of(name)
    threads = [threading.Thread(target=boot, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        sys.exit("; ".join(f"{name}: {exc}" for name, exc in errors.items()))


def inventory(*names: str) -> str:
    return "minis:\n  hosts:\n" + "".join(host_entry(name) for name in names)


def host_entry(name: str) -> str:
    p = paths(name)
    return (
        f"    {name}:\n"
        f"      ansible_host: {address(name)}\n"
        "      ansible_user: admin\n"
        "      ansible_become: true\n"
        "      ansible_python_interpreter: /usr/bin/python3\n"
        f"      ansible_ssh_private_key_file: {p['key']}\n"
        f"      ansible_ssh_common_args: -o UserKnownHostsFile={p['known_hosts']} -o StrictHostKeyChecking=yes\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("python")
    image = sub.add_parser("image")
    image.add_argument("name")
    image.add_argument("key")
    for cmd in ("up", "down", "reboot", "inventory", "exec"):
        s = sub.add_parser(cmd)
        s.add_argument("name", nargs="+" if cmd in ("up", "down", "inventory") else None)
        if cmd == "up":
            s.add_argument("--inventory", help="write the inventory entry to this file")
            s.add_argument("--image", help="a new Mini's disk starts as this image (mini.py image)")
        if cmd == "down":
            s.add_argument("--purge", action="store_true")
        if cmd == "exec":
            s.add_argument("argv", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    if args.command == "python":
        print(find_mini_python())
        return
    if os.geteuid() != 0:
        sys.exit("sandbox Minis need root (network and mount namespaces)")
    os.makedirs(RUN, exist_ok=True)
    if args.command == "image":
        print(save_image(args.name, args.key))
    elif args.command == "up":
        up_many(args.name, args.image)
        if args.inventory:
            with open(args.inventory, "w") as handle:
                handle.write(inventory(*args.name))
        print(inventory(*args.name), end="")
    elif args.command == "down":
        for name in args.name:
            down(name, args.purge)
    elif args.command == "reboot":
        down(args.name)
        up(args.name)
    elif args.command == "inventory":
        print(inventory(*args.name), end="")
    elif args.command == "exec":
        pid = init_pid(args.name)
        argv = [a for a in args.argv if a != "--"]
        os.execvp("nsenter", ["nsenter", "-t", str(pid), "-m", "-p", "-u", "-n", "-r", "-w"] + argv)


if __name__ == "__main__":
    main()
