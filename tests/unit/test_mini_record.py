"""A Mini record (``module_utils/_mini.py``): one validation for the API's ``POST /v1/minis`` and the
``mirascope.clawfarm.farm`` inventory plugin; what passes can stand in an inventory (no template, no SSH option)."""
from __future__ import annotations

import pytest
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _mini

from api import validation


def test_the_api_and_the_plugin_use_the_collections_module():
    from ansible_collections.mirascope.clawfarm.plugins.inventory import farm

    assert validation.mini is _mini and farm._mini is _mini


def test_defaults_and_canonical_forms():
    record = _mini.validate_mini({"name": "mini-01", "address": "Mini-01.Tailnet.TS.net", "tunnel_id": "6FF42AE2-765D-4ADF-8112-31C55C1551EF"})
    assert record == {"name": "mini-01", "address": "mini-01.tailnet.ts.net", "tunnel_id": "6ff42ae2-765d-4adf-8112-31c55c1551ef",
                      "max_claws": 12, "base_port": 8100, "timezone": "UTC", "status": "active"}
    assert _mini.validate_mini({"name": "m", "address": "::FFFF:10.0.0.1"})["address"] == "::ffff:a00:1"
    assert _mini.host_vars(record) == {"ansible_host": "mini-01.tailnet.ts.net", "cf_tunnel_id": record["tunnel_id"], "claw_max_per_mini": 12,
                                       "claw_base_port": 8100, "mini_timezone": "UTC", "mini_status": "active"}
    assert _mini.validate_mini({"status": "draining"}, partial=True) == {"status": "draining"}


@pytest.mark.parametrize("record, message", [
    ({"address": "x"}, "name is required"),
    ({"name": "-x"}, "name must be"),
    ({"name": "m", "address": "-oProxyCommand=id"}, "address must be"),
    ({"name": "m", "address": "{{ lookup('pipe', 'id') }}"}, "address must be"),
    ({"name": "m", "address": "a b"}, "address must be"),
    ({"name": "m", "tunnel_id": "{{ x }}"}, "tunnel_id must be"),
    ({"name": "m", "timezone": "Mars/Olympus"}, "not a known IANA"),
    ({"name": "m", "timezone": "../etc"}, "timezone must be"),
    ({"name": "m", "status": "gone"}, "status must be"),
    ({"name": "m", "max_claws": True}, "max_claws must be"),
    ({"name": "m", "base_port": "8100"}, "base_port must be"),
    ({"name": "m", "base_port": 65500, "max_claws": 100}, "outside 1024-65535"),
    ({"name": "m", "ansible_host": "x"}, "unknown Mini field"),
])
def test_bad_records(record, message):
    with pytest.raises(_mini.MiniInputError, match=message):
        _mini.validate_mini(record)
