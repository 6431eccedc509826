# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Host-free logic of the ``launchd_service`` module (PRIVATE to the collection).

Plist keys follow launchd.plist(5); commands and exit codes follow launchctl(1) and
docs/macos-launchd.md (what this code relies on, with sources).
"""

from __future__ import annotations

import plistlib
import re

LAUNCHCTL = "/bin/launchctl"

NOT_LOADED = 113  # Could not find specified service
NO_SUCH_PROCESS = 3  # bootout of a label that is not loaded; kill of a job with no process
IN_PROGRESS = 36  # EINPROGRESS: bootout accepted, the job is still stopping (current macOS)
ALREADY_IN_PROGRESS = 37  # EALREADY: a previous bootout of the job is still under way
STOPPING = (IN_PROGRESS, ALREADY_IN_PROGRESS)
EXIT_CONFIG = 78  # EX_CONFIG: OpenClaw's "config error"
DEFAULT_EXIT_TIMEOUT = 20  # ExitTimeOut when the plist sets none (launchd.plist(5))
DEFAULT_THROTTLE = 10  # ThrottleInterval when the plist sets none

# launchctl error numbers a module can meet (launchctl error N decodes them).
LAUNCHCTL_ERRORS = {
    1: ("Operation not permitted", "run the task with become: true"),
    3: ("No such process", "the job was not loaded"),
    5: ("Input/output error", "the job may still be tearing down, or the plist path is wrong; check `launchctl print`"),
    17: ("File exists", "the job is already loaded"),
    36: ("Operation now in progress", "the job is still stopping (bootout) or starting; retry in a few seconds"),
    37: ("Operation already in progress", "a previous bootout of the job is still under way; retry in a few seconds"),
    112: ("Could not find specified domain", "gui/<uid> exists only during a GUI login; use the system domain with UserName"),
    113: ("Could not find specified service", "the job is not loaded"),
    119: ("Service is disabled", "run `launchctl enable <domain>/<label>` (the module does when enabled=true)"),
    122: ("Path had bad ownership/permissions", "LaunchDaemon plists must be root:wheel and not group/world writable (0644)"),
    124: ("Domain is tearing down", "the Mini is logging out or shutting down; retry after it is up"),
    125: ("Domain does not support specified action", "gui/<uid> cannot be used over SSH; use the system domain"),
    133: ("Multiple errors were returned", "bootstrap one plist at a time"),
    134: ("Service cannot load in requested session", "LimitLoadToSessionType does not match the domain"),
    155: ("Refusing to execute/trust quarantined program", "run `xattr -dr com.apple.quarantine` on the program"),
}

_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
_DOMAIN = re.compile(r"^(system|gui/\d+|user/\d+)$")
RESOURCE_LIMIT_KEYS = ("Core", "CPU", "Data", "FileSize", "MemoryLock", "NumberOfFiles",
                       "NumberOfProcesses", "ResidentSetSize", "Stack")
PROCESS_TYPES = ("Background", "Standard", "Adaptive", "Interactive")


class LaunchdError(Exception):
    """Invalid input or a launchd failure, with a message that says how to fix it."""


def explain(rc: int) -> str:
    """``"<rc>: <text> (<hint>)"`` for a launchctl exit status."""
    text, hint = LAUNCHCTL_ERRORS.get(rc, ("unknown error", "see `launchctl error %d`" % rc))
    return f"{rc}: {text} ({hint})"


def validate_label(label: str) -> None:
    """Labels are reverse-DNS words: ``[A-Za-z0-9._-]``, not starting with a dot or dash."""
    if not isinstance(label, str) or not _LABEL.match(label):
        raise LaunchdError(f"label {str(label)[:80]!r} must be 1-255 characters of [A-Za-z0-9._-] (reverse DNS)")


def validate_domain(domain: str) -> None:
    """Domain targets the module supports: ``system``, ``gui/<uid>``, ``user/<uid>``."""
    if not _DOMAIN.match(domain or ""):
        raise LaunchdError(f"domain {domain!r} must be 'system', 'gui/<uid>' or 'user/<uid>'")


def service_target(domain: str, label: str) -> str:
    """``<domain>/<label>``, the service target launchctl(1) expects."""
    return f"{domain}/{label}"


def build_plist(params: dict) -> dict:
    """Turn module parameters into a launchd.plist(5) dictionary.

    ``params`` uses the module's option names (``label``, ``program_arguments``,
    ``user_name``, ``environment``, ``umask`` as an octal string, ...).  Unset options
    are left out, so the plist carries only what was asked for.

    Raises:
        LaunchdError: empty or relative program, non-string environment values (launchd
            silently ignores them), unknown resource-limit keys or process type.
    """
    argv = params.get("program_arguments") or []
    if not argv or not str(argv[0]).startswith("/"):
        raise LaunchdError("program_arguments must start with an absolute path (launchd does not search PATH)")
    plist = {"Label": params["label"], "ProgramArguments": [str(a) for a in argv]}
    simple = (
        ("user_name", "UserName"), ("group_name", "GroupName"), ("working_directory", "WorkingDirectory"),
        ("standard_out_path", "StandardOutPath"), ("standard_error_path", "StandardErrorPath"),
        ("standard_in_path", "StandardInPath"), ("keep_alive", "KeepAlive"), ("run_at_load", "RunAtLoad"),
        ("throttle_interval", "ThrottleInterval"), ("exit_timeout", "ExitTimeOut"),
        ("process_type", "ProcessType"), ("abandon_process_group", "AbandonProcessGroup"),
        ("start_interval", "StartInterval"),
    )
    for option, key in simple:
        if params.get(option) is not None:
            plist[key] = params[option]
    if plist.get("ProcessType") not in (None,) + PROCESS_TYPES:
        raise LaunchdError(f"process_type must be one of {', '.join(PROCESS_TYPES)}")
    if "StartInterval" in plist and (isinstance(plist["StartInterval"], bool) or not isinstance(plist["StartInterval"], int)
                                     or plist["StartInterval"] < 1):
        raise LaunchdError(f"start_interval must be a whole number of seconds >= 1, got {plist['StartInterval']!r}")
    env = params.get("environment")
    if env:
        bad = [k for k, v in env.items() if not isinstance(v, str)]
        if bad:
            raise LaunchdError(f"environment values must be strings (launchd ignores others): {', '.join(sorted(bad))}")
        plist["EnvironmentVariables"] = dict(env)
    for option, key in (("soft_resource_limits", "SoftResourceLimits"), ("hard_resource_limits", "HardResourceLimits")):
        limits = params.get(option)
        if limits:
            unknown = sorted(set(limits) - set(RESOURCE_LIMIT_KEYS))
            if unknown:
                raise LaunchdError(f"{option} keys must be among {', '.join(RESOURCE_LIMIT_KEYS)}; got {unknown}")
            plist[key] = {k: int(v) for k, v in limits.items()}
    if params.get("umask") is not None:
        # plists have no octal: Umask is the decimal value of the mode (launchd.plist(5)); 0077 -> 63.
        plist["Umask"] = int(str(params["umask"]), 8)
    return plist


def read_plist_bytes(data: bytes):
    """Parse plist bytes (XML or binary); None when unreadable, so it counts as different."""
    try:
        return plistlib.loads(data)
    except Exception:  # noqa: BLE001 - any parse failure means "rewrite it"
        return None


def dump_plist(plist: dict) -> bytes:
    """XML plist bytes, keys sorted, as launchd and ``plutil -lint`` accept them."""
    return plistlib.dumps(plist, fmt=plistlib.FMT_XML, sort_keys=True)


def parse_print(text: str) -> dict:
    """Parse ``launchctl print <domain>/<label>`` (human output, "NOT API").

    Only top-level ``key = value`` lines (exactly one leading TAB) are read, so the
    ``state = active`` lines of nested blocks cannot be mistaken for the job's state.

    Returns:
        ``{"state": str|None, "pid": int|None, "runs": int|None, "last_exit_code": int|None,
        "last_exit_reason": str|None, "path": str|None, "raw": {key: value}}``.
        ``last_exit_code`` is None for ``(never exited)``; a terminating signal is reported
        in ``last_exit_reason`` (e.g. ``Killed: 9``).
    """
    raw = {}
    for line in text.splitlines():
        if line.startswith("\t") and not line.startswith("\t\t"):
            key, sep, value = line.strip().partition(" = ")
            if sep and value not in ("{", "[") and not value.endswith("{"):
                raw.setdefault(key, value)
    info = {"state": raw.get("state"), "pid": None, "runs": None, "last_exit_code": None,
            "last_exit_reason": None, "path": raw.get("path"), "raw": raw}
    for key, field in (("pid", "pid"), ("runs", "runs")):
        if raw.get(key, "").isdigit():
            info[field] = int(raw[key])
    code = raw.get("last exit code", "")
    match = re.match(r"^(-?\d+)(?::\s*(.*))?$", code)
    if match:
        info["last_exit_code"] = int(match.group(1))
        info["last_exit_reason"] = match.group(2)
    if raw.get("last terminating signal"):
        info["last_exit_reason"] = raw["last terminating signal"]
    return info


def parse_print_disabled(text: str) -> dict:
    """Parse ``launchctl print-disabled <domain>`` into ``{label: disabled_bool}``.

    Accepts both ``"L" => disabled|enabled`` (macOS 26) and ``=> true|false`` (older).
    """
    states = {}
    for match in re.finditer(r'"([^"]+)"\s*=>\s*(\w+)', text):
        states[match.group(1)] = match.group(2) in ("disabled", "true")
    return states


def is_running(info: dict) -> bool:
    """A job is up when launchd reports ``state = running`` and a pid."""
    return info.get("state") == "running" and info.get("pid") is not None


def is_new_run(info: dict, old_pid: int, old_runs) -> bool:
    """Whether launchd has spawned the job again since a run with ``old_pid`` and ``old_runs`` spawns.

    ``runs`` counts spawns, so a new run shows even when it has already exited again (a
    configuration error) or reuses the old pid; without ``runs`` a different pid decides.
    """
    runs = info.get("runs")
    if runs is not None and old_runs is not None:
        return runs > old_runs
    return info.get("pid") is not None and info.get("pid") != old_pid


def plist_seconds(plist, key: str, default: int) -> int:
    """An integer plist key such as ``ExitTimeOut`` (seconds), or ``default`` when unset or not a number."""
    value = (plist or {}).get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else default


# Command lines (pinned by unit tests) ------------------------------------------

def cmd_print(target: str) -> list:
    return [LAUNCHCTL, "print", target]


def cmd_print_disabled(domain: str) -> list:
    return [LAUNCHCTL, "print-disabled", domain]


def cmd_enable(target: str) -> list:
    return [LAUNCHCTL, "enable", target]


def cmd_disable(target: str) -> list:
    return [LAUNCHCTL, "disable", target]


def cmd_bootstrap(domain: str, plist_path: str) -> list:
    return [LAUNCHCTL, "bootstrap", domain, plist_path]


def cmd_bootout(target: str) -> list:
    return [LAUNCHCTL, "bootout", target]


def cmd_kickstart(target: str, kill: bool = False) -> list:
    """``kickstart`` starts a job now; ``-k`` kills a running instance first, with SIGKILL on macOS."""
    return [LAUNCHCTL, "kickstart"] + (["-k"] if kill else []) + [target]


def cmd_kill(signal_name: str, target: str) -> list:
    """``launchctl kill SIGTERM system/L`` signals the job's process; a KeepAlive job is spawned again."""
    if signal_name not in ("SIGTERM", "SIGKILL"):
        raise LaunchdError(f"signal {signal_name!r} is not one the module sends")
    return [LAUNCHCTL, "kill", signal_name, target]
