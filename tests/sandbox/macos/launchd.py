#!/usr/bin/python3
"""launchd stand-in: PID 1 of a sandbox Mini.

What it does, following launchd(8), launchctl(1), launchd.plist(5) and
docs/macos-launchd.md:

* boot: seeds the local directory on first boot, starts sshd, then loads every plist in
  /Library/LaunchDaemons that is not disabled in the override database and starts those
  with RunAtLoad or KeepAlive;
* supervises jobs: runs ProgramArguments as UserName/GroupName (with initgroups), with
  exactly EnvironmentVariables (plus PATH=/usr/bin:/bin:/usr/sbin:/sbin and
  XPC_SERVICE_NAME), WorkingDirectory, Umask, StandardOutPath/StandardErrorPath (created
  owned by the job's user, O_APPEND), stdin /dev/null, in a new session;
* restarts a job when it exits under KeepAlive (true, or the SuccessfulExit/Crashed dict
  forms) no sooner than ThrottleInterval (default 10 s) after its previous spawn;
* runs a job every StartInterval seconds (counted from its load; a run that finds the job still
  running is skipped, as launchd coalesces it);
* stops a job with SIGTERM to its process group, then SIGKILL after ExitTimeOut (default 20 s);
  ``bootout`` waits a moment for the process to exit and otherwise fails with 36 "Operation now in
  progress" while the job stays visible to ``print`` until its process is gone (as current macOS);
  a second ``bootout`` meanwhile fails with 37 "Operation already in progress";
* ``kickstart -k`` kills the running instance with SIGKILL (as macOS does: ``print`` then shows
  ``last terminating signal = Killed: 9``) and spawns it again; ``kill SIG`` only signals the process;
* answers ``launchctl`` over a Unix socket (/var/run/launchd-standin.sock), with the
  peer's credentials deciding what it may change;
* on SIGTERM (the Mini shutting down) stops every job, then exits.
"""
from __future__ import annotations

import grp
import json
import os
import plistlib
import pwd
import selectors
import signal
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
import directory as ds  # noqa: E402

SOCKET_PATH = "/var/run/launchd-standin.sock"
DAEMONS_DIR = "/Library/LaunchDaemons"
OVERRIDES = "/var/db/com.apple.xpc.launchd/disabled.plist"
LOG = "/var/log/launchd-standin.log"
DEFAULT_PATH = "/usr/bin:/bin:/usr/sbin:/sbin"
# How long ``bootout`` waits for the job's process to exit before it answers 36 (macOS answers at once for a
# job that does not exit promptly; a gateway's shutdown takes seconds, so it always sees 36).
BOOTOUT_GRACE = 0.2

ERRORS = {1: "Operation not permitted", 3: "No such process", 5: "Input/output error",
          22: "Invalid argument", 36: "Operation now in progress", 37: "Operation already in progress",
          113: "Could not find specified service", 119: "Service is disabled",
          122: "Path had bad ownership/permissions", 125: "Domain does not support specified action"}


def log(message: str) -> None:
    with open(LOG, "a") as handle:
        handle.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")


class Job:
    def __init__(self, plist: dict, path: str):
        self.plist = plist
        self.path = path
        self.label = plist["Label"]
        self.pid = None
        self.runs = 0
        self.last_exit = None  # "(never exited)"
        self.last_signal = None
        self.last_spawn = 0.0
        self.next_spawn = None
        self.stopping_since = None
        self.stop_signal = None
        self.booting_out = False
        self.kickstart_after_stop = False
        self.next_interval = None  # monotonic time of the next StartInterval run

    @property
    def throttle(self) -> int:
        return int(self.plist.get("ThrottleInterval", 10))

    @property
    def exit_timeout(self) -> int:
        return int(self.plist.get("ExitTimeOut", 20))

    @property
    def start_interval(self):
        value = self.plist.get("StartInterval")
        return int(value) if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None

    def wants_restart(self, code, sig) -> bool:
        keep = self.plist.get("KeepAlive", False)
        if keep is True:
            return True
        if isinstance(keep, dict):
            if "SuccessfulExit" in keep and sig is None and (code == 0) == bool(keep["SuccessfulExit"]):
                return True
            crashed = sig in (signal.SIGILL, signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGABRT)
            if "Crashed" in keep and crashed == bool(keep["Crashed"]):
                return True
        return False

    def state(self) -> str:
        if self.pid is not None:
            if self.stopping_since:
                return "SIGKILLed" if self.stop_signal == signal.SIGKILL else "SIGTERMed"
            return "running"
        if self.next_spawn is not None:
            return "spawn scheduled"
        return "not running"


class Launchd:
    def __init__(self):
        self.jobs: dict[str, Job] = {}
        self.by_pid: dict[int, Job] = {}
        self.shutting_down = False
        self.sshd = None

    # -- overrides ----------------------------------------------------------
    def overrides(self) -> dict:
        try:
            with open(OVERRIDES, "rb") as handle:
                return plistlib.load(handle)
        except (FileNotFoundError, plistlib.InvalidFileException):
            return {}

    def set_override(self, label: str, disabled: bool) -> None:
        data = self.overrides()
        data[label] = disabled
        os.makedirs(os.path.dirname(OVERRIDES), exist_ok=True)
        with open(OVERRIDES + ".tmp", "wb") as handle:
            plistlib.dump(data, handle)
        os.replace(OVERRIDES + ".tmp", OVERRIDES)

    # -- spawning -----------------------------------------------------------
    def spawn(self, job: Job) -> None:
        plist = job.plist
        job.next_spawn = None
        argv = plist.get("ProgramArguments") or [plist.get("Program")]
        user = plist.get("UserName")
        try:
            pw = pwd.getpwnam(user) if user else pwd.getpwuid(0)
            gid = grp.getgrnam(plist["GroupName"]).gr_gid if plist.get("GroupName") else pw.pw_gid
        except KeyError as exc:
            log(f"{job.label}: spawn failed: unknown user or group {exc}")
            job.last_exit, job.next_spawn = 78, time.monotonic() + job.throttle
            return
        umask = plist.get("Umask")
        umask = int(umask, 8) if isinstance(umask, str) else (umask if umask is not None else 0o022)
        env = {"PATH": DEFAULT_PATH, "XPC_SERVICE_NAME": job.label, "XPC_FLAGS": "0x0"}
        env.update({k: v for k, v in (plist.get("EnvironmentVariables") or {}).items() if isinstance(v, str)})

        def open_log(key):
            path = plist.get(key)
            if not path:
                return os.open("/dev/null", os.O_WRONLY)
            existed = os.path.exists(path)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666 & ~umask)
            if not existed:
                os.fchown(fd, pw.pw_uid, gid)
            return fd

        try:
            stdout = open_log("StandardOutPath")
            stderr = open_log("StandardErrorPath")
        except OSError as exc:
            log(f"{job.label}: spawn failed: cannot open log: {exc}")
            job.last_exit, job.next_spawn = 1, time.monotonic() + job.throttle
            return
        pid = os.fork()
        if pid == 0:  # child
            try:
                os.setsid()
                os.dup2(os.open("/dev/null", os.O_RDONLY), 0)
                os.dup2(stdout, 1)
                os.dup2(stderr, 2)
                os.closerange(3, 65536)
                for sig in (signal.SIGTERM, signal.SIGCHLD, signal.SIGINT, signal.SIGHUP):
                    signal.signal(sig, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_SETMASK, [])
                os.initgroups(pw.pw_name, gid)
                os.setgid(gid)
                os.setuid(pw.pw_uid)
                os.umask(umask)
                os.chdir(plist.get("WorkingDirectory") or "/")
                os.execve(argv[0], argv, env)
            except BaseException as exc:  # noqa: BLE001
                os.write(2, f"launchd stand-in: cannot exec {argv[0]}: {exc}\n".encode())
            os._exit(127)
        os.close(stdout)
        os.close(stderr)
        job.pid = pid
        job.runs += 1
        job.last_spawn = time.monotonic()
        self.by_pid[pid] = job
        log(f"{job.label}: spawned pid {pid} (run {job.runs})")

    def stop(self, job: Job, sig=signal.SIGTERM) -> None:
        if job.pid is None:
            return
        if job.stopping_since is None:
            job.stopping_since = time.monotonic()
        job.stop_signal = sig
        try:
            os.killpg(job.pid, sig)
        except ProcessLookupError:
            try:  # not yet its own process group leader (between fork and setsid)
                os.kill(job.pid, sig)
            except ProcessLookupError:
                pass

    # -- reaping ------------------------------------------------------------
    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            job = self.by_pid.pop(pid, None)
            if job is None:
                continue
            code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
            sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
            try:  # launchd kills what is left of the job's process group (AbandonProcessGroup=false)
                if not job.plist.get("AbandonProcessGroup"):
                    os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            job.pid = None
            job.last_exit, job.last_signal = code, sig
            log(f"{job.label}: pid {pid} exited code={code} signal={sig}")
            stopping = job.stopping_since is not None
            job.stopping_since = None
            job.stop_signal = None
            if job.booting_out:
                self.jobs.pop(job.label, None)
                log(f"{job.label}: booted out")
            elif job.kickstart_after_stop:
                job.kickstart_after_stop = False
                self.spawn(job)
            elif not stopping and not self.shutting_down and job.wants_restart(code, sig):
                job.next_spawn = max(time.monotonic(), job.last_spawn + job.throttle)

    def tick(self) -> None:
        self.reap()
        now = time.monotonic()
        for job in list(self.jobs.values()):
            if job.pid is None and job.next_spawn is not None and now >= job.next_spawn and not self.shutting_down:
                self.spawn(job)
            if job.next_interval is not None and now >= job.next_interval and not self.shutting_down:
                job.next_interval = now + job.start_interval
                if job.pid is None and not job.booting_out:
                    log(f"{job.label}: StartInterval={job.start_interval}s run")
                    self.spawn(job)
            if job.pid is not None and job.stopping_since and now - job.stopping_since > job.exit_timeout:
                log(f"{job.label}: did not exit within ExitTimeOut={job.exit_timeout}s, SIGKILL")
                self.stop(job, signal.SIGKILL)

    # -- loading ------------------------------------------------------------
    def load(self, path: str, start: bool = True):
        """Returns 0 or a launchd error number."""
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return 5
        if not path.endswith(".plist"):
            return 5
        if st.st_uid != 0 or st.st_mode & 0o022:
            return 122
        try:
            with open(path, "rb") as handle:
                plist = plistlib.load(handle)
        except Exception:  # noqa: BLE001
            return 5
        label = plist.get("Label")
        if not isinstance(label, str) or not (plist.get("ProgramArguments") or plist.get("Program")):
            return 5
        if label in self.jobs:
            return 5  # already loaded: "Bootstrap failed: 5: Input/output error"
        if self.overrides().get(label):
            return 119
        job = Job(plist, path)
        self.jobs[label] = job
        if job.start_interval:
            job.next_interval = time.monotonic() + job.start_interval
        log(f"{label}: loaded from {path}")
        if start and (plist.get("RunAtLoad") or plist.get("KeepAlive") is True
                      or isinstance(plist.get("KeepAlive"), dict) and "SuccessfulExit" in plist["KeepAlive"]):
            self.spawn(job)
        return 0

    def boot(self) -> None:
        for name in sorted(os.listdir(DAEMONS_DIR)) if os.path.isdir(DAEMONS_DIR) else []:
            path = os.path.join(DAEMONS_DIR, name)
            if name.endswith(".plist"):
                rc = self.load(path)
                if rc not in (0, 119):
                    log(f"boot: {path}: error {rc}: {ERRORS.get(rc)}")

    def shutdown(self) -> None:
        self.shutting_down = True
        for job in self.jobs.values():
            job.next_spawn = None
            self.stop(job)
        deadline = time.monotonic() + max([j.exit_timeout for j in self.jobs.values()] + [1])
        while any(j.pid for j in self.jobs.values()) and time.monotonic() < deadline:
            self.reap()
            time.sleep(0.1)
        for job in self.jobs.values():
            self.stop(job, signal.SIGKILL)
        if self.sshd:
            self.sshd.terminate()
        log("shutdown complete")

    # -- launchctl requests ---------------------------------------------------
    def target(self, text: str):
        domain, _, label = text.partition("/")
        if domain != "system":
            return None, None
        return domain, label

    def print_job(self, job: Job) -> str:
        plist = job.plist
        lines = [f"system/{job.label} = {{", "\tactive count = %d" % (1 if job.pid else 0),
                 f"\tpath = {job.path}", "\ttype = LaunchDaemon", f"\tstate = {job.state()}", "",
                 f"\tprogram = {(plist.get('ProgramArguments') or [plist.get('Program')])[0]}", "\targuments = {"]
        lines += [f"\t\t{a}" for a in plist.get("ProgramArguments") or []]
        lines += ["\t}", "", "\tdefault environment = {", f"\t\tPATH => {DEFAULT_PATH}", "\t}", "",
                  "\tenvironment = {"]
        lines += [f"\t\t{k} => {v}" for k, v in sorted((plist.get("EnvironmentVariables") or {}).items())]
        lines += ["\t}", "", "\tdomain = system"]
        if plist.get("UserName"):
            lines.append(f"\tusername = {plist['UserName']}")
        if plist.get("GroupName"):
            lines.append(f"\tgroup = {plist['GroupName']}")
        if job.start_interval:
            lines.append(f"\trun interval = {job.start_interval} seconds")
        lines += [f"\tminimum runtime = {job.throttle}", f"\texit timeout = {job.exit_timeout}",
                  f"\truns = {job.runs}"]
        if job.pid:
            lines.append(f"\tpid = {job.pid}")
        if job.last_signal:
            # strsignal(3) words, as macOS prints them: "Terminated: 15", "Killed: 9"
            lines.append(f"\tlast terminating signal = {signal.strsignal(job.last_signal)}: {job.last_signal}")
        elif job.last_exit is None:
            lines.append("\tlast exit code = (never exited)")
        else:
            suffix = ": EX_CONFIG" if job.last_exit == 78 else ""
            lines.append(f"\tlast exit code = {job.last_exit}{suffix}")
        props = ["keepalive" if plist.get("KeepAlive") else None, "runatload" if plist.get("RunAtLoad") else None]
        lines += ["", "\tendpoints = {", "\t}", "",
                  "\tproperties = " + " | ".join(p for p in props if p) or "none", "}"]
        return "\n".join(lines) + "\n"

    def handle(self, argv: list, uid: int):
        """Returns (rc, stdout, stderr) for one launchctl invocation."""
        if not argv:
            return 0, "", "Usage: launchctl <subcommand> ... | help [subcommand]\n"
        cmd, args = argv[0], argv[1:]
        root = uid == 0
        if cmd in ("bootstrap", "bootout", "enable", "disable", "kickstart", "kill") and not root:
            verb = {"bootstrap": "Bootstrap", "bootout": "Boot-out"}.get(cmd, cmd.title())
            return 1, "", f"{verb} failed: 1: Operation not permitted\n"
        if cmd == "print":
            if not args:
                return 64, "", "Usage: launchctl print <domain-target> | <service-target>\n"
            domain, label = self.target(args[0])
            if domain is None:
                return 112, "", f"Could not find domain for {args[0]}\n"
            if not label:
                services = "\n".join(f"\t\t{j.pid or 0}\t-\t{j.label}" for j in self.jobs.values())
                return 0, f"system = {{\n\ttype = system\n\tservices = {{\n{services}\n\t}}\n}}\n", ""
            job = self.jobs.get(label)
            if job is None:
                return 113, "", f"Bad request.\nCould not find service \"{label}\" in domain for system\n"
            return 0, self.print_job(job), ""
        if cmd == "print-disabled":
            rows = "".join(f'\t"{k}" => {"disabled" if v else "enabled"}\n' for k, v in sorted(self.overrides().items()))
            return 0, f"disabled services = {{\n{rows}}}\n", ""
        if cmd in ("enable", "disable"):
            domain, label = self.target(args[0] if args else "")
            if not label:
                return 64, "", f"Usage: launchctl {cmd} <service-target>\n"
            self.set_override(label, cmd == "disable")
            return 0, "", ""
        if cmd == "bootstrap":
            if len(args) != 2 or args[0] != "system":
                return 125 if args and args[0] != "system" else 64, "", "Bootstrap failed: 125: Domain does not support specified action\n"
            rc = self.load(args[1])
            return (0, "", "") if rc == 0 else (rc, "", f"Bootstrap failed: {rc}: {ERRORS[rc]}\n")
        if cmd == "bootout":
            if len(args) == 2 and args[0] == "system":  # bootout system /path/L.plist
                label = next((j.label for j in self.jobs.values() if j.path == args[1]), None)
            else:
                domain, label = self.target(args[0] if args else "")
            job = self.jobs.get(label or "")
            if job is None:
                return 3, "", "Boot-out failed: 3: No such process\n"
            if job.booting_out:
                return 37, "", "Boot-out failed: 37: Operation already in progress\n"
            job.booting_out = True
            job.next_spawn = job.next_interval = None
            job.kickstart_after_stop = False
            if job.pid is None:
                self.jobs.pop(job.label, None)
                return 0, "", ""
            self.stop(job)
            deadline = time.monotonic() + BOOTOUT_GRACE
            while job.pid is not None and time.monotonic() < deadline:
                time.sleep(0.02)
                self.reap()
            if job.pid is not None:  # still stopping: launchd goes on (SIGKILL after ExitTimeOut) and says so
                return 36, "", "Boot-out failed: 36: Operation now in progress\n"
            return 0, "", ""
        if cmd == "kickstart":
            kill = "-k" in args
            targets = [a for a in args if not a.startswith("-")]
            domain, label = self.target(targets[0] if targets else "")
            job = self.jobs.get(label or "")
            if job is None:
                return 113, "", f"Could not kickstart service \"{label}\": 113: Could not find specified service\n"
            if job.booting_out:
                return 37, "", f"Could not kickstart service \"{label}\": 37: Operation already in progress\n"
            if job.pid is not None and kill:  # macOS kills the running instance outright (SIGKILL), no SIGTERM
                job.kickstart_after_stop = True
                self.stop(job, signal.SIGKILL)
            elif job.pid is None:
                self.spawn(job)
            out = f"service spawned with pid: {job.pid}\n" if "-p" in args and job.pid else ""
            return 0, out, ""
        if cmd == "kill":
            if len(args) != 2:
                return 64, "", "Usage: launchctl kill <signal-name|signal-number> <service-target>\n"
            domain, label = self.target(args[1])
            job = self.jobs.get(label or "")
            if job is None:
                return 113, "", f"Could not find service \"{label}\" in domain for system\n"
            sig = int(args[0]) if args[0].isdigit() else getattr(signal, args[0] if args[0].startswith("SIG") else "SIG" + args[0])
            if job.pid:
                os.kill(job.pid, sig)
            return 0, "", ""
        if cmd == "error":
            code = int(args[0]) if args and args[0].isdigit() else 0
            return 0, f"{code}: {ERRORS.get(code, 'Unknown error')}\n", ""
        return 64, "", f"Unrecognized subcommand: {cmd}\n"


def start_sshd():
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    return subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", "/etc/ssh/sshd_config"],
                            stdout=open("/var/log/sshd.log", "a"), stderr=subprocess.STDOUT)


def main() -> None:
    os.makedirs("/var/run", exist_ok=True)
    ds.seed_from_unix()
    ds.sync_unix()
    launchd = Launchd()
    try:
        os.unlink(SOCKET_PATH)
    except FileNotFoundError:
        pass
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(SOCKET_PATH)
    os.chmod(SOCKET_PATH, 0o666)
    server.listen(64)
    server.setblocking(False)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    signal.signal(signal.SIGINT, lambda *_: stop.append(True))
    launchd.sshd = start_sshd()
    launchd.boot()
    log("boot complete")
    sel = selectors.DefaultSelector()
    sel.register(server, selectors.EVENT_READ)
    while not stop:
        for _key, _ in sel.select(timeout=0.1):
            try:
                conn, _ = server.accept()
            except BlockingIOError:
                continue
            with conn:
                conn.setblocking(True)
                conn.settimeout(5)
                creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
                _pid, uid, _gid = struct.unpack("3i", creds)
                data = b""
                while not data.endswith(b"\n"):
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                try:
                    rc, out, err = launchd.handle(json.loads(data)["argv"], uid)
                except Exception as exc:  # noqa: BLE001
                    rc, out, err = 5, "", f"launchd stand-in error: {exc}\n"
                conn.sendall(json.dumps({"rc": rc, "stdout": out, "stderr": err}).encode() + b"\n")
        launchd.tick()
    launchd.shutdown()


if __name__ == "__main__":
    main()
