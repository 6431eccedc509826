"""Alert rules on health samples, with durations and three severities, and Discord notifications.

The design's monitoring table as rules (thresholds configurable):

| rule | scope | condition | for | severity |
|---|---|---|---|---|
| heartbeat_missing | mini | newest sample older than 180 s | 0 | critical |
| gateway_down | claw | no gateway pid | 0 | critical |
| handshake_failed | claw | pid present but the token-checked handshake fails | 0 | critical |
| cpu_high | mini | CPU > 80 % | 300 s | warning |
| memory_high | mini | memory > 90 % | 0 | warning |
| disk_high | mini | a volume > 85 % full | 0 | warning |
| tunnel_disconnected | mini | the cloudflared job is not running | 0 | critical |
| backup_failed | claw | no successful backup for > 24 h | 0 | warning |
| browser_crash_loop | claw | the claw's browser started more than 4 times in 30 min (it keeps crashing) | 0 | warning |

An alert fires once when its condition has held for the rule's duration and resolves once when it stops holding;
nothing is sent for the samples in between, nor for a condition that clears before its duration (a flap).
A rule that needs more than the current sample (``browser_crash_loop``: the browser start times of the last 30 min)
keeps what it remembers in the alert state too, so every replica judges it on the same history.
Info events (claw provisioned, migration complete, backup success) are sent as they come from job results.
Delivery runs on a background thread with retries and never blocks the caller.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

import httpx

log = logging.getLogger("clawfarm.api.alerts")

SEVERITY_COLORS = {"critical": 0xE01E5A, "warning": 0xECB22E, "info": 0x2EB67D, "resolved": 0x4A90D9}


@dataclass(frozen=True)
class Rule:
    """One alert rule: ``check(subject) -> (active: bool, value)`` over a Mini or claw record.

    A rule that ``remembers`` is called ``check(subject, memory, now) -> (active, value, memory)``: ``memory`` is what
    it returned for the same Mini or claw at the previous evaluation (None at first), JSON-serialisable and kept in the
    alert store with the rest of the alert state (so shared by the replicas); an empty one is forgotten. The rule holds
    no state of its own.
    """
    id: str
    scope: str  # "mini" or "claw"
    severity: str
    summary: str
    for_seconds: float
    check: object
    remembers: bool = False


def browser_crash_loop(max_starts: int = 4, window_seconds: float = 1800):
    """A remembering rule check: the claw's browser (mini_health's ``browser``) started more than ``max_starts`` times
    in the last ``window_seconds`` before the evaluation.

    OpenClaw starts a claw's browser at its first use and again at the next use after it died, so a browser that keeps
    crashing shows a new ``started_at`` in sample after sample; the distinct start times seen (counted by the
    collection's ``_browser.recent_starts``) are its (re)starts. They are the rule's memory (sorted UNIX seconds), kept
    in the alert store: with several replicas each evaluates some of the samples, and the count is of the starts all of
    them saw. Start times older than the window are forgotten; newer than the evaluation (the Mini's clock ahead of
    the API's) are kept and counted once they are in it. A sample without browser data adds no start.
    """
    from .validation import browser as _browser

    def check(c, memory, now):
        started = (c.get("browser") or {}).get("started_at")
        starts = {t for t in [*(memory or []), started] if t is not None and t >= now - window_seconds}
        recent = _browser.recent_starts(starts, now, window_seconds)
        return len(recent) > max_starts, len(recent), sorted(starts)
    return check


def default_rules(cpu_percent: float = 80, memory_percent: float = 90, disk_percent: float = 85, heartbeat_seconds: float = 180,
                  cpu_for_seconds: float = 300, backup_max_age_seconds: float = 24 * 3600) -> list[Rule]:
    """The design's monitoring table (see the module docstring); every threshold is a parameter."""
    def disk(m):
        worst = max((d.get("percent") or 0 for d in m.get("disks") or []), default=0)
        return worst > disk_percent, worst

    return [
        Rule("heartbeat_missing", "mini", "critical", "heartbeat missing", 0, lambda m: (m["age_s"] > heartbeat_seconds, round(m["age_s"]))),
        Rule("cpu_high", "mini", "warning", "CPU high", cpu_for_seconds, lambda m: (m["cpu_percent"] > cpu_percent, m["cpu_percent"])),
        Rule("memory_high", "mini", "warning", "memory high", 0,
             lambda m: (m["memory"]["percent"] > memory_percent, m["memory"]["percent"])),
        Rule("disk_high", "mini", "warning", "disk almost full", 0, disk),
        Rule("tunnel_disconnected", "mini", "critical", "tunnel disconnected", 0,
             lambda m: (m.get("connector") is not None and m["connector"].get("state") != "running", (m.get("connector") or {}).get("state"))),
        Rule("gateway_down", "claw", "critical", "gateway down (no pid)", 0, lambda c: (not c.get("pid"), c.get("launchd_state"))),
        Rule("handshake_failed", "claw", "critical", "gateway handshake fails", 0,
             lambda c: (bool(c.get("pid")) and c.get("health") not in ("ok", "starting"), c.get("health"))),
        Rule("backup_failed", "claw", "warning", "no successful backup for over 24 h", 0,
             lambda c: (c.get("last_backup_age_s") is not None and c["last_backup_age_s"] > backup_max_age_seconds,
                        c.get("last_backup_age_s"))),
        Rule("browser_crash_loop", "claw", "warning", "browser keeps crashing (more than 4 starts in 30 min)", 0, browser_crash_loop(),
             remembers=True),
    ]


class MemoryAlertStore:
    """The alert engine's state in this process (one replica; the unit tests)."""

    def __init__(self):
        self.pending: dict[tuple, float] = {}
        self.firing: dict[tuple, dict] = {}
        self.memory: dict[tuple, object] = {}

    @contextmanager
    def state(self, mini: str):
        """``(pending, firing, memory)`` of every Mini: ``{(rule, mini, claw_id): since}``, ``{(rule, mini, claw_id):
        alert}`` and ``{(rule, mini, claw_id): what a remembering rule keeps}``."""
        yield self.pending, self.firing, self.memory


class DbAlertStore:
    """The alert engine's state in the job store (table ``alert_states``, one row per Mini: pending conditions, firing
    alerts and the remembering rules' memory, e.g. ``browser_crash_loop``'s start times), shared by the replicas.

    :meth:`state` holds the Mini's row for the evaluation (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite has one
    writer) and writes it back in the same transaction, so two replicas evaluating samples of one Mini take turns and
    an alert fires and resolves once whichever replica runs the next health job.
    """

    def __init__(self, Session):
        self.Session = Session

    @contextmanager
    def state(self, mini: str):
        """``(pending, firing, memory)`` of ``mini`` (keys ``(rule, mini, claw_id)``), saved when the block ends
        without error. (A row written before the rules had memory has none: it starts empty.)"""
        from sqlalchemy import select
        from sqlalchemy.dialects import postgresql, sqlite

        from .db import AlertState, utcnow

        inserts = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}
        with self.Session() as s, s.begin():
            # The row exists before it is locked (a first sample of a Mini on two replicas at once adds it once).
            insert = inserts[s.get_bind().dialect.name]
            s.execute(insert(AlertState).values(mini=mini, state={}, updated_at=utcnow()).on_conflict_do_nothing())
            row = s.execute(select(AlertState).where(AlertState.mini == mini).with_for_update()).scalar_one()
            stored = row.state or {}
            pending = {(rule, mini, claw): since for rule, claw, since in stored.get("pending", [])}
            firing = {(rule, mini, claw): alert for rule, claw, alert in stored.get("firing", [])}
            memory = {(rule, mini, claw): kept for rule, claw, kept in stored.get("memory", [])}
            yield pending, firing, memory
            row.state = {"pending": [[k[0], k[2], v] for k, v in sorted(pending.items(), key=str)],
                         "firing": [[k[0], k[2], v] for k, v in sorted(firing.items(), key=str)],
                         "memory": [[k[0], k[2], v] for k, v in sorted(memory.items(), key=str)]}
            row.updated_at = utcnow()


class AlertEngine:
    """Evaluates rules on each sample and emits firing/resolved transitions exactly once.

    ``store`` keeps what holds since when, what fired and what the remembering rules remember
    (:class:`MemoryAlertStore` by default; the service uses :class:`DbAlertStore`, shared by its replicas). Messages
    are sent after the state is saved.
    """

    def __init__(self, rules: list[Rule], notify, store=None):
        self.rules = rules
        self.notify = notify  # callable(message: dict)
        self.store = store or MemoryAlertStore()
        self.lock = threading.Lock()

    def evaluate(self, mini: str, sample: dict, now: float | None = None) -> list[dict]:
        """Evaluate one Mini's sample: ``{"age_s", "cpu_percent", "memory", "disks", "connector", "claws": [...]}``.

        Returns the messages sent (each ``{"state": "firing"|"resolved", "rule", "severity", "mini", "claw_id", "value",
        "summary"}``).
        """
        now = time.time() if now is None else now
        subjects = [("mini", mini, None, sample)]
        claws_known = sample.get("claws") is not None  # None: the Mini is silent, its claws are not judged
        subjects += [("claw", mini, c.get("claw_id"), c) for c in sample.get("claws") or []]
        sent = []
        with self.lock, self.store.state(mini) as (pending, firing, memory):
            seen = set()
            for scope, mini_name, claw_id, subject in subjects:
                for rule in self.rules:
                    if rule.scope != scope:
                        continue
                    key = (rule.id, mini_name, claw_id)
                    seen.add(key)
                    try:
                        if rule.remembers:
                            active, value, kept = rule.check(subject, memory.get(key), now)
                        else:
                            active, value = rule.check(subject)
                    except (KeyError, TypeError):
                        continue  # the sample lacks what the rule reads
                    if rule.remembers:
                        if kept:
                            memory[key] = kept
                        else:
                            memory.pop(key, None)
                    sent += self._step(pending, firing, rule, key, active, value, now)
            # A claw that disappeared from the sample (deprovisioned) resolves its alerts and is forgotten.
            for key in [k for k in firing if k[1] == mini and k not in seen and claws_known]:
                rule = next((r for r in self.rules if r.id == key[0]), None)
                if rule is not None:
                    sent += self._step(pending, firing, rule, key, False, None, now)
            for key in [k for k in memory if k[1] == mini and k not in seen and claws_known]:
                memory.pop(key)
        for message in sent:
            self.notify(message)
        return sent

    @staticmethod
    def _step(pending: dict, firing: dict, rule: Rule, key: tuple, active: bool, value, now: float) -> list[dict]:
        base = {"rule": rule.id, "severity": rule.severity, "mini": key[1], "claw_id": key[2], "value": value, "summary": rule.summary}
        if active:
            started = pending.setdefault(key, now)
            if key not in firing and now - started >= rule.for_seconds:
                firing[key] = base
                return [{**base, "state": "firing"}]
            return []
        pending.pop(key, None)
        if key in firing:
            firing.pop(key)
            return [{**base, "state": "resolved"}]
        return []


def discord_payload(message: dict) -> dict:
    """A Discord incoming-webhook body (https://discord.com/developers/docs/resources/webhook#execute-webhook)."""
    state = message.get("state", "info")
    severity = message.get("severity", "info")
    title = {"firing": f"[{severity.upper()}] {message.get('summary')}", "resolved": f"[RESOLVED] {message.get('summary')}"}.get(
        state, f"[INFO] {message.get('summary')}")
    fields = [{"name": "Mini", "value": str(message.get("mini") or "-"), "inline": True}]
    if message.get("claw_id"):
        fields.append({"name": "Claw", "value": str(message["claw_id"]), "inline": True})
    if message.get("value") is not None:
        fields.append({"name": "Value", "value": str(message["value"]), "inline": True})
    color = SEVERITY_COLORS["resolved"] if state == "resolved" else SEVERITY_COLORS.get(severity, SEVERITY_COLORS["info"])
    return {"username": "clawfarm", "content": title, "embeds": [{"title": title, "color": color, "fields": fields}],
            "allowed_mentions": {"parse": []}}


class DiscordNotifier:
    """Sends messages to a Discord webhook from a background thread, in order, retrying with back-off.

    ``url`` is a secret (it authorises posting): it is never logged. ``delays`` are the waits between attempts (s).
    """

    def __init__(self, url: str, delays=(1, 2, 4, 8, 16)):
        self.url, self.delays = url, list(delays)
        self.queue: queue.Queue = queue.Queue()
        self.delivered: list[dict] = []
        self.thread = threading.Thread(target=self._loop, name="discord-notifier", daemon=True)
        self.thread.start()

    def __call__(self, message: dict) -> None:
        self.queue.put(message)

    def _loop(self) -> None:
        while True:
            message = self.queue.get()
            body = discord_payload(message)
            for attempt, delay in enumerate([0, *self.delays], start=1):
                time.sleep(delay)
                try:
                    response = httpx.post(self.url, json=body, timeout=10)
                    if response.status_code == 429:
                        time.sleep(float(response.headers.get("retry-after", "1")))
                        continue
                    if response.status_code < 300:
                        self.delivered.append(message)
                        break
                except httpx.HTTPError:
                    pass
                log.warning("Discord delivery of %s/%s failed (attempt %d)", message.get("rule"), message.get("state"), attempt)
            self.queue.task_done()
