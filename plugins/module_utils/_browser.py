# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A claw's browser as its processes show it (docs/browser.md): host-free logic, fed by psutil or ps.

OpenClaw launches its managed profile's Chromium as the gateway's child, as the claw's user, with
``--user-data-dir=<state dir>/browser/openclaw/user-data`` (_claw.browser_user_data_dir). Chromium's helpers (zygotes,
renderers, GPU, network service, crashpad) carry ``--type=...``; the browser process itself does not. A process counts
as the claw's browser only when it runs as the claw's uid: another user's process naming the same directory is not it.

Process records are dicts ``{"pid", "ppid", "uid", "cmdline" (list), "rss" (bytes), "create_time" (UNIX seconds)}``.
"""

from __future__ import annotations

USER_DATA_FLAG = "--user-data-dir="


def _user_data_dir(cmdline) -> str | None:
    for arg in cmdline or ():
        if arg.startswith(USER_DATA_FLAG):
            return arg[len(USER_DATA_FLAG):]
    return None


def is_browser_main(proc: dict) -> bool:
    """A Chromium browser process (not a helper): it names a user data dir and has no ``--type=``."""
    cmdline = proc.get("cmdline") or ()
    return _user_data_dir(cmdline) is not None and not any(arg.startswith("--type=") for arg in cmdline)


def descendants(processes, pid: int) -> list:
    """The records of ``pid``'s children, grandchildren, ... (pid itself excluded)."""
    children = {}
    for proc in processes:
        children.setdefault(proc.get("ppid"), []).append(proc)
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child["pid"] not in (p["pid"] for p in found) and child["pid"] != pid:
                found.append(child)
                todo.append(child["pid"])
    return found


def browser_status(processes, uid: int, user_data_dir: str) -> dict:
    """What a claw's browser is doing, from the Mini's process list.

    Returns:
        ``{"running", "chromium_pid", "started_at", "rss_bytes", "processes", "other_browsers"}``: the managed profile's
        browser process of ``uid`` (``chromium_pid`` None and ``running`` False when none runs), when it started, the RSS
        of its process tree (its helpers of the same uid), how many processes that is, and how many other browser
        processes of ``uid`` run (another profile the claw's code started: counted in ``rss_bytes`` too).
    """
    uid = int(uid)
    wanted = user_data_dir.rstrip("/")
    mains = [p for p in processes if p.get("uid") == uid and is_browser_main(p)]
    managed = sorted((p for p in mains if (_user_data_dir(p["cmdline"]) or "").rstrip("/") == wanted),
                     key=lambda p: p.get("create_time") or 0)
    tree = {}
    for main in mains:
        for proc in [main, *descendants(processes, main["pid"])]:
            if proc.get("uid") == uid:
                tree[proc["pid"]] = proc
    main = managed[0] if managed else None
    return {
        "running": main is not None,
        "chromium_pid": main["pid"] if main else None,
        "started_at": round(main["create_time"]) if main and main.get("create_time") else None,
        "rss_bytes": int(sum(p.get("rss") or 0 for p in tree.values())),
        "processes": len(tree),
        "other_browsers": len(mains) - len(managed),
    }


def psutil_processes(psutil, uid: int | None = None) -> list:
    """Process records of the Mini from psutil (only ``uid``'s when given); processes that vanish are left out."""
    records = []
    for proc in psutil.process_iter():
        try:
            with proc.oneshot():
                proc_uid = proc.uids().real
                if uid is not None and proc_uid != int(uid):
                    continue
                records.append({"pid": proc.pid, "ppid": proc.ppid(), "uid": proc_uid, "cmdline": proc.cmdline(),
                                "rss": proc.memory_info().rss, "create_time": proc.create_time()})
        except psutil.Error:
            continue
    return records


def ps_processes(ps_output: str) -> list:
    """Process records from ``ps -axww -o pid=,ppid=,uid=,rss=,command=`` (rss in KiB; no start time; macOS and Linux).

    The command is split on spaces, which is enough to find ``--user-data-dir=`` and ``--type=`` in it (a user data dir
    with a space in its name is not found; the farm's never has one).
    """
    records = []
    for line in ps_output.splitlines():
        fields = line.split(None, 4)
        if len(fields) < 5 or not all(f.isdigit() for f in fields[:4]):
            continue
        pid, ppid, uid, rss = (int(f) for f in fields[:4])
        records.append({"pid": pid, "ppid": ppid, "uid": uid, "rss": rss * 1024, "cmdline": fields[4].split(" "),
                        "create_time": None})
    return records


def recent_starts(starts, now: float, window: float) -> list:
    """The browser start times (UNIX seconds) within ``window`` seconds before ``now``, oldest first.

    A browser that keeps crashing is started again at the next use, each time with a new start time: the number of
    distinct start times seen in a window is how often it (re)started there (alert ``browser_crash_loop``).
    """
    return sorted(t for t in starts if t is not None and now - window <= t <= now)
