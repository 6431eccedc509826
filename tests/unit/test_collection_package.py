"""The collection as others get it: role contracts match role defaults, one default per farm setting, the tarball
holds only the collection, the changelog lists the release, and nothing points outside the repository."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
ROLES = REPO / "roles"


def _yaml(path: Path):
    return yaml.safe_load(path.read_text())


def _galaxy() -> dict:
    return _yaml(REPO / "galaxy.yml")


def test_every_claw_default_is_in_the_main_entry_point_and_typed_and_described():
    defaults = _yaml(ROLES / "claw/defaults/main.yml")
    options = _yaml(ROLES / "claw/meta/argument_specs.yml")["argument_specs"]["main"]["options"]
    assert set(defaults) <= set(options), set(defaults) - set(options)
    for name, spec in options.items():
        assert spec.get("type"), name
        assert spec.get("description"), name


def test_every_role_entry_point_option_is_typed_and_described():
    for specs in ROLES.glob("*/meta/argument_specs.yml"):
        for entry, spec in _yaml(specs)["argument_specs"].items():
            assert spec.get("short_description"), (specs, entry)
            for name, option in (spec.get("options") or {}).items():
                assert option.get("type") and option.get("description"), (specs, entry, name)


def test_claw_state_choices_are_exactly_the_dispatched_task_files():
    main = _yaml(ROLES / "claw/meta/argument_specs.yml")["argument_specs"]["main"]["options"]
    states = main["claw_state"]["choices"]
    assert _yaml(ROLES / "claw/defaults/main.yml")["claw_state"] in states
    for state in states:
        assert (ROLES / "claw/tasks" / f"{state}.yml").is_file(), state


def test_claw_entry_points_name_task_files():
    for entry in _yaml(ROLES / "claw/meta/argument_specs.yml")["argument_specs"]:
        assert (ROLES / "claw/tasks" / f"{entry}.yml").is_file(), entry


def test_farm_settings_have_one_default():
    """The farm role holds the farm-wide defaults; the claw role depends on it and restates none of them."""
    farm = set(_yaml(ROLES / "farm/defaults/main.yml"))
    assert {"claw_base_port", "claw_max_per_mini", "cf_tunnel_mode", "cf_tunnel_id", "cloudflared_label",
            "cloudflared_config_path", "mini_python_interpreter"} <= farm
    for defaults in ROLES.glob("*/defaults/main.yml"):
        if defaults.parent.parent.name != "farm":
            assert not farm & set(_yaml(defaults) or {}), defaults
    assert set(_yaml(ROLES / "farm/meta/argument_specs.yml")["argument_specs"]["main"]["options"]) == farm
    for role in ("claw", "cloudflared", "mini_python"):
        deps = _yaml(ROLES / role / "meta/main.yml")["dependencies"]
        assert [d["role"] if isinstance(d, dict) else d for d in deps] == ["mirascope.clawfarm.farm"], role
    assert not list((ROLES / "farm").glob("tasks/*")), "the farm role holds defaults only"


def test_version_is_the_galaxy_one_everywhere():
    version = _galaxy()["version"]
    assert tomllib.loads((REPO / "pyproject.toml").read_text())["project"].get("version", version) == version
    api_versions = re.findall(r'FastAPI\([^)]*\bversion="([^"]+)"', (REPO / "api/app.py").read_text())
    assert set(api_versions) <= {version}, api_versions
    changelog = _yaml(REPO / "changelogs/changelog.yaml")
    assert version in changelog["releases"]
    assert f"v{version}".replace(".", "\\.") in (REPO / "CHANGELOG.md").read_text()


def test_dependencies_are_real():
    deps = _galaxy().get("dependencies") or {}
    tracked = subprocess.run(["git", "ls-files", "plugins", "roles", "playbooks"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.split()
    text = "\n".join((REPO / f).read_text(errors="replace") for f in tracked if (REPO / f).is_file())
    for collection in deps:
        assert f"{collection}." in text, f"{collection} is a dependency but nothing uses it"


def test_nothing_points_outside_the_repository():
    """No tracked file refers to the sessions' shared folder: the facts the code relies on are in docs/."""
    shared = "shared" + "/"  # (written so that this file does not name it either)
    hits = subprocess.run(["git", "grep", "-n", "-F", "-e", shared], cwd=REPO, capture_output=True, text=True)
    assert hits.stdout.splitlines() == []


def test_egg_info_is_not_tracked():
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    assert not [f for f in tracked if ".egg-info/" in f]


def test_the_tarball_holds_only_the_collection(tmp_path):
    galaxy = shutil.which("ansible-galaxy") or str(Path(sys.executable).parent / "ansible-galaxy")
    subprocess.run([galaxy, "collection", "build", "--output-path", str(tmp_path), str(REPO)], check=True, capture_output=True)
    (tarball,) = tmp_path.glob("mirascope-clawfarm-*.tar.gz")
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
    top = {name.split("/")[0] for name in names}
    assert top <= {"MANIFEST.json", "FILES.json", "README.md", "CHANGELOG.md", "changelogs", "docs", "meta", "playbooks", "plugins",
                   "roles", "tests"}, top
    assert {"roles", "plugins", "playbooks", "meta", "CHANGELOG.md"} <= top
    for name in names:
        parts = name.split("/")
        assert not {".cache", ".venv", "__pycache__", ".ruff_cache", ".pytest_cache"} & set(parts), name
        assert ".egg-info" not in name, name
        assert parts[0] != "tests" or len(parts) == 1 or parts[1] == "sanity", name
