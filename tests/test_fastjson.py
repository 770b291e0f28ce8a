"""fastjson reads and writes exactly what json does, without importing it."""
from __future__ import annotations

import json

import pytest

from conftest import SHARED_DATA
from wazuh_anomaly import fastjson


def test_real_alerts_read_and_write_exactly_as_with_json():
    files = [SHARED_DATA / "wazuh-alerts" / name for name in
             ("wazuh_attack_lines.json", "wazuh_no_attack_lines.json", "ossec_insect.json")]
    if not files[0].exists():
        pytest.skip("real alerts not found")
    count = 0
    for path in files:
        for line in path.read_text(encoding="utf-8").splitlines():
            expected = json.loads(line)
            assert fastjson.loads(line) == expected
            assert fastjson.loads(line.encode()) == expected
            assert fastjson.dumps(expected) == json.dumps(expected, separators=(",", ":"), ensure_ascii=False)
            assert fastjson.dumps_strict(expected) == fastjson.dumps(expected)
            count += 1
    assert count == 697


@pytest.mark.parametrize("text", ["", "   ", "{", "{} x", "[1,]", '{"a": 1,}', b"\xff\xfe{", "tru"])
def test_malformed_json_is_a_value_error_like_json(text):
    with pytest.raises(ValueError):
        json.loads(text)
    with pytest.raises(ValueError):
        fastjson.loads(text)


def test_values_json_cannot_write_are_refused():
    with pytest.raises(TypeError, match="not JSON serializable"):
        fastjson.dumps({"a": object()})
    assert fastjson.dumps({"s": "é\n\"", "n": [1, 2.5, None, True]}) == '{"s":"é\\n\\"","n":[1,2.5,null,true]}'


def test_the_strict_writer_refuses_what_json_refuses_without_allow_nan():
    for bad in (float("nan"), float("inf"), float("-inf")):
        with pytest.raises(ValueError):
            json.dumps({"x": bad}, allow_nan=False)
        with pytest.raises(ValueError):
            fastjson.dumps_strict({"x": bad})
    value = {"s": "é\u2028\x00", "n": [1, -0.0, 1e-7, 123456789012345678901234567890, None, False]}
    assert fastjson.dumps_strict(value) == json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
