"""Events and results are redacted against the job's secret values: long values anywhere, short values (which
the old rule skipped under 4 characters) as whole tokens, without garbling other text or breaking the data."""
from __future__ import annotations

from api.jobs import REDACTED, redact


def test_a_long_secret_is_replaced_inside_any_text():
    secret = "sk-ant-0123456789"
    out = redact({"msg": f"write failed: KEY={secret}; again {secret}x", "list": [secret], secret: 1}, [secret])
    assert secret not in str(out)
    assert out["msg"] == f"write failed: KEY={REDACTED}; again {REDACTED}x" and out["list"] == [REDACTED] and out[REDACTED] == 1


def test_a_short_secret_is_replaced_as_a_whole_token():
    out = redact({"msg": "value 42 is invalid (KEY=42, '42'); port 8042 and id x42y stay", "task": "on"}, ["42", "on"])
    assert out["msg"] == f"value {REDACTED} is invalid (KEY={REDACTED}, '{REDACTED}'); port 8042 and id x42y stay"
    assert out["task"] == REDACTED


def test_one_and_two_character_values_are_redacted_too():
    assert redact("a=b x", ["b"]) == f"a={REDACTED} x"
    assert redact({"m": "Z"}, ["Z"]) == {"m": REDACTED}


def test_numbers_and_structure_survive():
    stats = {"ok": 1, "changed": 0, "failures": {}, "rc": 1, "flag": True, "none": None}
    assert redact(stats, ["1", "0", "True"]) == stats  # only strings are text; the data stays valid


def test_regex_characters_in_a_secret_are_literal():
    assert redact("x a.b y axb", ["a.b"]) == f"x {REDACTED} y axb"
    assert redact("p(+)q", ["(+)"]) == f"p{REDACTED}q"  # no word characters at its edges: boundaries hold anyway


def test_nothing_to_redact():
    assert redact({"a": "b"}, []) == {"a": "b"} and redact({"a": "b"}, [None, ""]) == {"a": "b"}
