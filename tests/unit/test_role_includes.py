"""Tasks written once in the claw role and included where needed: the health wait (tasks/health.yml) and the claw
record for the web backend (tasks/record.yml)."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
FILES = sorted([*REPO.glob("roles/*/tasks/*.yml"), *REPO.glob("roles/*/handlers/*.yml"), *REPO.glob("playbooks/*.yml"),
                *REPO.glob("playbooks/tasks/*.yml")])


def _tasks(items):
    for item in items or []:
        if not isinstance(item, dict):
            continue
        if "hosts" in item:
            for key in ("pre_tasks", "tasks", "post_tasks", "handlers"):
                yield from _tasks(item.get(key))
        elif "block" in item:
            for key in ("block", "rescue", "always"):
                yield from _tasks(item.get(key))
        else:
            yield item


def _where(predicate):
    return sorted(str(path.relative_to(REPO)) for path in FILES for task in _tasks(yaml.safe_load(path.read_text()))
                  if predicate(task))


def test_the_health_wait_is_written_once():
    def waits_for_health(task):
        args = task.get("mirascope.clawfarm.claw_status") or {}
        return "wait_timeout" in args and "claw_health_timeout" in str(args["wait_timeout"])
    assert _where(waits_for_health) == ["roles/claw/tasks/health.yml"]


def test_the_claw_record_is_written_once():
    def records_the_claw(task):
        return "claw" in ((task.get("ansible.builtin.set_stats") or {}).get("data") or {})
    assert _where(records_the_claw) == ["roles/claw/tasks/record.yml"]
    includes = _where(lambda t: t.get("ansible.builtin.include_tasks") == "record.yml")
    assert includes == ["roles/claw/tasks/present.yml", "roles/claw/tasks/status.yml"]
