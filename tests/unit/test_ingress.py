"""Ingress rule logic: validation like cloudflared's, merge/removal/order, catch-all handling, diffs."""
from __future__ import annotations

import json

import pytest
import yaml
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _ingress as ing
from ansible_collections.mirascope.clawfarm.plugins.modules import cf_tunnel_ingress as module

DOMAIN = "claws.example.com"
HOST = "claw-1a2b3c4d-0000-4000-8000-000000000001.claws.example.com"
CATCH = {"service": "http_status:404"}


def rules(*hosts):
    return [{"hostname": h, "service": f"http://localhost:{8100 + i}"} for i, h in enumerate(hosts)] + [dict(CATCH)]


# ---- validation of input ------------------------------------------------------------------------------------

@pytest.mark.parametrize("hostname, message", [
    ("", "hostname is required"),
    ("claw-x.other.com", "outside the domain"),
    ("claw-x.claws.example.com.evil.com", "outside the domain"),
    ("evilclaws.example.com", "outside the domain"),
    ("claws.example.com", "domain apex"),
    ("*.claws.example.com", "wildcards are not allowed"),
    ("claw-x.claws.example.com:443", "must not contain a port"),
    ("claw_x.claws.example.com", "not a valid DNS name"),
    ("-claw.claws.example.com", "not a valid DNS name"),
    ("a" * 64 + ".claws.example.com", "not a valid DNS name"),
    ("claw x.claws.example.com", "not a valid DNS name"),
])
def test_bad_hostnames(hostname, message):
    with pytest.raises(ing.IngressError, match=message):
        ing.validate_hostname(hostname, DOMAIN)


def test_hostname_is_lowercased_and_wildcard_allowed_when_asked():
    assert ing.validate_hostname("Claw-A.Claws.Example.com.", DOMAIN) == "claw-a.claws.example.com"
    assert ing.validate_hostname("*.claws.example.com", DOMAIN, allow_wildcard=True) == "*.claws.example.com"
    with pytest.raises(ing.IngressError, match="leading"):
        ing.validate_hostname("a.*.claws.example.com", DOMAIN, allow_wildcard=True)


@pytest.mark.parametrize("service, message", [
    ("", "service is required"),
    ("http://10.0.0.5:8100", "not a loopback URL"),
    ("http://example.com:8100", "not a loopback URL"),
    ("tcp://localhost:22", "must be an http"),
    ("http_status:404", "must be an http"),
    ("unix:/tmp/sock", "must be an http"),
    ("http://localhost", "explicit port"),
    ("http://localhost:8100/", "must not have a path"),
    ("http://localhost:8100/api", "must not have a path"),
    ("http://localhost:99999", "invalid port"),
])
def test_bad_services(service, message):
    with pytest.raises(ing.IngressError, match=message):
        ing.validate_loopback_service(service)


@pytest.mark.parametrize("service", ["http://localhost:8100", "https://127.0.0.1:8443", "ws://[::1]:8100", "HTTP://localhost:8100",
                                     "http://127.0.0.2:8100"])
def test_loopback_services(service):
    assert ing.validate_loopback_service(service).startswith(service.split(":")[0].lower())


@pytest.mark.parametrize("path", ["(", "[a-", "^/api(?=x)", "(?<!a)b", r"(a)\1"])
def test_bad_paths(path):
    with pytest.raises(ing.IngressError):
        ing.validate_path(path)


def test_good_paths():
    assert ing.validate_path("^/api(/|$)") == "^/api(/|$)"
    assert ing.validate_path("") is None
    assert ing.validate_path(None) is None


# ---- cloudflared's validation of a whole list -------------------------------------------------------------------

def test_valid_ingress_passes():
    ing.validate_ingress(rules("a.claws.example.com", "b.claws.example.com"))
    ing.validate_ingress([{"hostname": "*", "service": "http_status:404"}])
    ing.validate_ingress([{"hostname": "x.example.com", "service": "unix:/tmp/s"}, {"service": "hello_world"}])


@pytest.mark.parametrize("bad, message", [
    ([], "doesn't contain any ingress rules"),
    ([{"hostname": "a.example.com", "service": "http://localhost:1"}], "last ingress rule must match all URLs"),
    ([{"path": "^/x", "service": "http_status:404"}], "last ingress rule must match all URLs"),
    ([dict(CATCH), {"hostname": "a.example.com", "service": "http://localhost:1"}, dict(CATCH)], "Rule #1 is matching"),
    ([{"hostname": "a.example.com:80", "service": "http://localhost:1"}, dict(CATCH)], "cannot contain a port"),
    ([{"hostname": "a.*.example.com", "service": "http://localhost:1"}, dict(CATCH)], "only one wildcard"),
    ([{"hostname": "a.example.com", "service": "http://localhost:1/"}, dict(CATCH)], "must not have a path"),
    ([{"hostname": "a.example.com", "service": "ftp://localhost:1"}, dict(CATCH)], "not a service cloudflared knows"),
    ([{"hostname": "a.example.com", "service": "http_status:1000"}, dict(CATCH)], "invalid HTTP status"),
    ([{"hostname": "a.example.com"}, dict(CATCH)], "has no service"),
    ([{"hostname": "a.example.com", "path": "(", "service": "http://localhost:1"}, dict(CATCH)], "Rule #1: path"),
    (["not a mapping", dict(CATCH)], "not a mapping"),
])
def test_invalid_ingress_refused(bad, message):
    with pytest.raises(ing.IngressError, match=message):
        ing.validate_ingress(bad)


# ---- merge, removal, order ------------------------------------------------------------------------------------

def test_new_rule_goes_just_before_the_catch_all_and_others_keep_their_order():
    before = rules("a.claws.example.com", "b.claws.example.com")
    before[0]["originRequest"] = {"connectTimeout": "10s"}
    after = ing.merge_rule(before, ing.make_rule(HOST, "http://localhost:8105"))
    assert after[:2] == before[:2]
    assert after[2] == {"hostname": HOST, "service": "http://localhost:8105"}
    assert after[3] == CATCH
    assert before[0]["originRequest"] == {"connectTimeout": "10s"} and len(before) == 3


def test_existing_rule_is_updated_in_place():
    before = rules("a.claws.example.com", HOST, "b.claws.example.com")
    after = ing.merge_rule(before, ing.make_rule(HOST, "http://localhost:9000"))
    assert [r.get("hostname") for r in after] == [r.get("hostname") for r in before]
    assert after[1]["service"] == "http://localhost:9000"


def test_merge_is_idempotent():
    rule = ing.make_rule(HOST, "http://localhost:8100", origin_request={"noTLSVerify": True})
    once = ing.merge_rule(rules("a.claws.example.com"), rule)
    assert ing.rules_equal(ing.merge_rule(once, rule), once)


def test_empty_origin_request_equals_none():
    existing = [{"hostname": HOST, "service": "http://localhost:8100", "originRequest": {}}, dict(CATCH)]
    assert ing.rules_equal(ing.merge_rule(existing, ing.make_rule(HOST, "http://localhost:8100")), existing)


def test_missing_catch_all_is_added_last():
    after = ing.merge_rule([{"hostname": "a.claws.example.com", "service": "http://localhost:1"}], ing.make_rule(HOST, "http://localhost:2"))
    assert after[-1] == CATCH and after[1]["hostname"] == HOST
    assert ing.merge_rule([], ing.make_rule(HOST, "http://localhost:2")) == [{"hostname": HOST, "service": "http://localhost:2"}, CATCH]


def test_custom_catch_all_is_kept():
    before = [{"hostname": "a.claws.example.com", "service": "http://localhost:1"}, {"service": "http_status:503"}]
    after = ing.merge_rule(before, ing.make_rule(HOST, "http://localhost:2"))
    assert after[-1] == {"service": "http_status:503"}


def test_same_host_with_a_path_is_a_different_rule():
    before = [{"hostname": HOST, "path": "^/admin", "service": "http://localhost:9"}, dict(CATCH)]
    after = ing.merge_rule(before, ing.make_rule(HOST, "http://localhost:8100"))
    assert len(after) == 3 and after[0] == before[0]
    assert ing.remove_rule(after, HOST) == before


def test_remove_keeps_everything_else():
    before = rules("a.claws.example.com", HOST, "b.claws.example.com")
    after = ing.remove_rule(before, HOST)
    assert after == [before[0], before[2], before[3]]
    assert ing.remove_rule(after, HOST) == after
    assert ing.remove_rule([], HOST) == [CATCH]


def test_find_rule_is_case_insensitive_on_stored_names():
    assert ing.find_rule([{"hostname": HOST.upper(), "service": "http://localhost:1"}], HOST)


# ---- diffs and files ------------------------------------------------------------------------------------------

def test_rule_level_diff():
    before = rules("a.claws.example.com")
    after = ing.merge_rule(before, ing.make_rule(HOST, "http://localhost:8105", path="^/x"))
    diff = ing.rules_diff(before, after, "/etc/cloudflared/config.yml")
    assert diff["before"] == "a.claws.example.com -> http://localhost:8100\n* -> http_status:404\n"
    assert diff["after"].splitlines()[1] == f"{HOST} path=^/x -> http://localhost:8105"
    assert diff["before_header"] == "/etc/cloudflared/config.yml (before)"


def test_config_text_round_trip_keeps_other_keys_in_order():
    text = "tunnel: 6f1c0a6e-7d0e-4d55-9a40-0c1f3b3c8a11\ncredentials-file: /etc/cloudflared/t.json\noriginRequest:\n  connectTimeout: 30s\n" \
           "ingress:\n  - hostname: a.claws.example.com\n    service: http://localhost:8100\n  - service: http_status:404\nloglevel: info\n"
    doc = ing.parse_config_text(text, yaml)
    out = ing.dump_config_text(doc, yaml)
    assert list(yaml.safe_load(out)) == ["tunnel", "credentials-file", "originRequest", "ingress", "loglevel"]
    assert yaml.safe_load(out) == yaml.safe_load(text)


def test_config_text_without_yaml_library():
    doc = {"tunnel": "t", "ingress": [CATCH]}
    text = ing.dump_config_text(doc, None)
    assert json.loads(text) == doc and ing.parse_config_text(text, None) == doc
    with pytest.raises(ing.IngressError, match="PyYAML is not installed"):
        ing.parse_config_text("tunnel: t\n", None)
    with pytest.raises(ing.IngressError, match="mapping"):
        ing.parse_config_text("- a\n", yaml)
    assert ing.parse_config_text("", None) == {}


# ---- module option validation (before any I/O) ----------------------------------------------------------------

def params(**overrides):
    base = dict(hostname=HOST, domain=DOMAIN, service="http://localhost:8100", path=None, origin_request=None, allow_wildcard=False,
                state="present", mode="local", config_path="/etc/cloudflared/config.yml", account_id=None, tunnel_id=None, api_token=None,
                api_base_url="", api_max_retries=0, api_timeout=5.0, lock_dir="/tmp/x", dns=False, zone_id=None)
    base.update(overrides)
    return base


@pytest.mark.parametrize("overrides, message", [
    (dict(hostname="claw.other.org"), "outside the domain"),
    (dict(hostname="*.claws.example.com"), "wildcards are not allowed"),
    (dict(service="http://192.168.1.10:8100"), "not a loopback URL"),
    (dict(service=None), "service is required"),
    (dict(path="(unclosed"), "not a valid regular expression"),
    (dict(mode="api", tunnel_id="", account_id="a", api_token="t"), "tunnel_id is empty"),
    (dict(mode="api", tunnel_id="   ", account_id="a", api_token="t"), "tunnel_id is empty"),
    (dict(mode="api", tunnel_id="not-a-uuid", account_id="a", api_token="t"), "not a tunnel UUID"),
    (dict(mode="api", tunnel_id="6f1c0a6e-7d0e-4d55-9a40-0c1f3b3c8a11", api_token="t"), "account_id is required"),
    (dict(dns=True, tunnel_id="6f1c0a6e-7d0e-4d55-9a40-0c1f3b3c8a11", api_token="t"), "zone_id is required"),
])
def test_module_refuses_bad_input(overrides, message, monkeypatch):
    monkeypatch.delenv("CLOUDFLARE_API_TOKEN", raising=False)
    with pytest.raises(ing.IngressError, match=message):
        module.validate_params(params(**overrides))


def test_module_absent_needs_no_service():
    assert module.validate_params(params(state="absent", service=None))["service"] is None
