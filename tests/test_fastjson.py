"""fastjson reads and writes what json does, and every malformed document, whatever its
bytes, is a ValueError (never SystemError, never a changed state for the next call)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings, strategies as st

from conftest import REPO, SHARED_DATA
from wazuh_anomaly.core import jsonio as fastjson

PROPERTY = settings(max_examples=300, deadline=None, derandomize=True)
STATE = json.dumps({"keys": {"27\x1fphopkins": {"since": 1642.5, "values": ["/usr/bin/id", "é"]}},
                    "started": 1640995200.0, "findings": 3, "nested": [[1, {"a": [True, None]}]]})


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


def test_a_state_file_cut_anywhere_is_a_value_error_and_the_next_read_still_works():
    # A state file cut by a crash or a full disk: on Python 3.10/3.11 the old reader raised
    # SystemError here (CPython's private scanner), and kept failing on later calls.
    for cut in range(1, len(STATE)):
        with pytest.raises(ValueError):
            fastjson.loads(STATE[:cut])
        assert fastjson.loads(STATE) == json.loads(STATE)


def test_a_cut_document_is_a_value_error_in_a_process_that_never_imported_json():
    # The per-alert integration never imports json: there the old reader's error path
    # found no JSONDecodeError class and raised SystemError.
    code = f"""
from wazuh_anomaly.core import jsonio as fastjson
state = {STATE!r}
for cut in (1, 10, len(state) // 2, len(state) - 1):
    for _ in range(2):
        try:
            fastjson.loads(state[:cut])
        except ValueError:
            continue
        raise SystemExit("no error for a cut document")
print(fastjson.loads(state) == fastjson.loads(state.encode()))
"""
    env = {**os.environ, "PYTHONPATH": str(REPO / "integration")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "True"


def test_a_document_nested_too_deep_is_a_value_error():
    with pytest.raises(ValueError):
        fastjson.loads("[" * 100_000 + "]" * 100_000)


@PROPERTY
@given(st.binary(max_size=200))
def test_any_bytes_are_a_value_or_a_value_error(raw):
    try:
        fastjson.loads(raw)
    except ValueError:
        pass
    assert fastjson.loads(b'{"ok":1}') == {"ok": 1}


@PROPERTY
@given(st.integers(min_value=0, max_value=len(STATE)), st.binary(max_size=20))
def test_a_cut_state_with_garbage_after_it_is_a_value_error(cut, garbage):
    raw = STATE.encode()[:cut] + garbage
    try:
        assert isinstance(fastjson.loads(raw), (dict, list, str, int, float, bool, type(None)))
    except ValueError:
        pass


def test_values_json_cannot_write_are_refused():
    with pytest.raises(TypeError, match="not JSON serializable"):
        fastjson.dumps({"a": object()})
    assert fastjson.dumps({"s": "é\n\"", "n": [1, 2.5, None, True]}) == '{"s":"é\\n\\"","n":[1,2.5,null,true]}'


def test_the_strict_writer_refuses_what_json_refuses_without_allow_nan():
    for bad in (float("nan"), float("inf"), float("-inf")):
        with pytest.raises(ValueError):
            json.dumps({"x": bad}, allow_nan=False)
        with pytest.raises(ValueError):
            fastjson.dumps_strict({"x": [1, {"y": bad}]})
    value = {"s": "é\u2028\x00", "n": [1, -0.0, 1e-7, 123456789012345678901234567890, None, False]}
    assert fastjson.dumps_strict(value) == json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
