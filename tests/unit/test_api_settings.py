"""Settings come from the environment through pydantic-settings: types and ranges checked with the variable named and
its value never shown, empty variables count as unset, defaults as documented."""
from __future__ import annotations

import pytest

from api.config import REPO, load_settings

BASE = {"CLAWFARM_API_TOKENS": "tok-0123456789abcdef, second-token-0123"}


def test_defaults_and_parsing():
    settings = load_settings({**BASE, "CLAWFARM_API_WORKERS": "", "CLAWFARM_API_LEASE_SECONDS": "7.5", "CLAWFARM_API_ALERT_DISK_PERCENT": "70",
                              "CLAWFARM_API_PLAYBOOK_DIR": "/srv/books", "UNRELATED": "x"})
    assert settings.tokens == ["tok-0123456789abcdef", "second-token-0123"]
    assert settings.workers == 4 and settings.lease_seconds == 7.5 and settings.alert_thresholds == {"disk_percent": 70.0}
    assert str(settings.playbook_dir) == "/srv/books" and settings.inventory == REPO / "inventory"
    assert settings.database_url == f"sqlite:///{REPO / '.cache' / 'api' / 'clawfarm-api.sqlite'}" and settings.openapi == "off"


@pytest.mark.parametrize("name, value", [("WORKERS", "four-SECRETISH"), ("WORKERS", "0"), ("LEASE_SECONDS", "-1"),
                                         ("MAX_BODY_BYTES", "1e9x"), ("HEALTH_INTERVAL", "soon")])
def test_a_bad_value_is_named_and_not_shown(name, value):
    with pytest.raises(RuntimeError) as error:
        load_settings({**BASE, f"CLAWFARM_API_{name}": value})
    assert f"CLAWFARM_API_{name}" in str(error.value) and value not in str(error.value)


def test_no_token_is_refused():
    with pytest.raises(RuntimeError, match="no API token"):
        load_settings({"CLAWFARM_API_TOKENS": " , "})


def test_a_minis_capacity_and_first_port_default_to_the_farm_roles():
    """One default each (roles/farm/defaults/main.yml): a Mini registered without them, or an inventory Mini without
    the host vars, gets what an operator's ansible-playbook would use."""
    import yaml

    from api.config import DEFAULT_BASE_PORT, DEFAULT_MAX_CLAWS
    from api.schemas import MiniCreate

    farm = yaml.safe_load((REPO / "roles/farm/defaults/main.yml").read_text())
    assert (DEFAULT_MAX_CLAWS, DEFAULT_BASE_PORT) == (farm["claw_max_per_mini"], farm["claw_base_port"])
    mini = MiniCreate(name="mini-01", address="10.0.0.5", bootstrap=False)
    assert (mini.max_claws, mini.base_port) == (farm["claw_max_per_mini"], farm["claw_base_port"])
