"""Connection options are given once: every task of a module in meta/runtime.yml's action groups gets them from
``module_defaults`` of its play or of the claw role's dispatch (roles/claw/tasks/main.yml), never in its own arguments,
and the Cloudflare API token never goes to a Mini."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
PREFIX = "mirascope.clawfarm."
TASK_FILES = sorted([*REPO.glob("roles/*/tasks/*.yml"), *REPO.glob("playbooks/*.yml"), *REPO.glob("playbooks/tasks/*.yml")])


def _groups() -> dict:
    return yaml.safe_load((REPO / "meta/runtime.yml").read_text())["action_groups"]


def _connection_options() -> dict:
    """Options of each group's connection doc fragment: what module_defaults passes."""
    options = {}
    for group, fragment in (("r2", "r2_connection"), ("cloudflare", "cloudflare_api")):
        text = (REPO / f"plugins/doc_fragments/{fragment}.py").read_text()
        doc = yaml.safe_load(text.split('DOCUMENTATION = r"""', 1)[1].split('"""', 1)[0])
        options[group] = set(doc["options"])
    return options


def _tasks(items, defaults=()):
    """Every task (with the module_defaults groups in force around it) in a list of plays, blocks or tasks."""
    for item in items or []:
        if not isinstance(item, dict):
            continue
        here = (*defaults, *(item.get("module_defaults") or {}))
        if "hosts" in item:
            for key in ("pre_tasks", "tasks", "post_tasks", "handlers"):
                yield from _tasks(item.get(key), here)
        elif "block" in item:
            for key in ("block", "rescue", "always"):
                yield from _tasks(item.get(key), here)
        else:
            yield item, here


def _group_tasks():
    groups = _groups()
    for path in TASK_FILES:
        for task, defaults in _tasks(yaml.safe_load(path.read_text())):
            for group, modules in groups.items():
                for module in modules:
                    if PREFIX + module in task:
                        yield path, task, task[PREFIX + module], group, defaults


def test_group_tasks_take_connection_options_from_module_defaults():
    options = _connection_options()
    found = 0
    for path, task, args, group, defaults in _group_tasks():
        found += 1
        given = set(args or {}) & options[group]
        assert not given, f"{path.relative_to(REPO)}: {task['name']!r} passes {sorted(given)} itself"
        in_claw_role = path.parent == REPO / "roles/claw/tasks"
        assert in_claw_role or f"group/{PREFIX}{group}" in defaults, \
            f"{path.relative_to(REPO)}: {task['name']!r} runs without module_defaults for group/{PREFIX}{group}"
    assert found >= 10


def test_claw_role_dispatch_sets_both_groups():
    main = yaml.safe_load((REPO / "roles/claw/tasks/main.yml").read_text())
    (dispatch,) = [t for t in main if "block" in t]
    assert set(dispatch["module_defaults"]) == {f"group/{PREFIX}r2", f"group/{PREFIX}cloudflare"}
    assert dispatch["block"][0]["ansible.builtin.include_tasks"] == "{{ claw_state }}.yml"
    assert "claw_cf_on_mini" in dispatch["module_defaults"][f"group/{PREFIX}cloudflare"]["api_token"]


def test_cloudflare_tasks_on_a_mini_do_not_get_the_api_token():
    """A cloudflare-group task that is not delegated to the control node sets claw_cf_on_mini (the token is omitted)."""
    for path, task, _args, group, _defaults in _group_tasks():
        if group == "cloudflare" and task.get("delegate_to") != "localhost":
            assert "claw_cf_on_mini" in (task.get("vars") or {}), f"{path.relative_to(REPO)}: {task['name']!r}"
