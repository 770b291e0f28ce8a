"""The one timestamp parser (core/timeparse.py), as a specification: every form the
product reads, the same instant as Python's datetime gives, None (or one ConfigError
sentence for a user's input) for anything else, and no datetime import on the per-alert path."""
from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings, strategies as st

from conftest import REPO
from wazuh_anomaly.core.errors import ConfigError
from wazuh_anomaly.core.timeparse import parse_time_arg, parse_timestamp, wazuh_timestamp

instants = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 12, 30))
offsets = st.integers(-23 * 60 - 59, 23 * 60 + 59)


def written(when: datetime, offset_minutes: int, digits: int, zone_style: str, sep: str = "T") -> str:
    local = when.replace(tzinfo=timezone(timedelta(minutes=offset_minutes)))
    text = local.strftime(f"%Y-%m-%d{sep}%H:%M:%S")
    if digits:
        text += "." + f"{local.microsecond:06d}"[:digits]
    sign = "-" if offset_minutes < 0 else "+"
    h, m = divmod(abs(offset_minutes), 60)
    zone = {"Z": "Z" if offset_minutes == 0 else f"{sign}{h:02d}{m:02d}",
            "colon": f"{sign}{h:02d}:{m:02d}", "plain": f"{sign}{h:02d}{m:02d}"}[zone_style]
    return text + zone


def reference(text: str) -> float:
    """The instant as Python's datetime reads it."""
    t = text.replace("Z", "+00:00")
    if t[-5] in "+-" and t[-3] != ":":
        t = t[:-2] + ":" + t[-2:]
    head, _, rest = t.partition(".")
    if rest:
        digits = rest[:-6]
        t = f"{head}.{(digits + '000000')[:6]}{rest[-6:]}"
    return datetime.fromisoformat(t.replace(" ", "T")).timestamp()


@settings(max_examples=500, deadline=None)
@given(instants, offsets, st.integers(0, 6), st.sampled_from(["Z", "colon", "plain"]), st.sampled_from(["T", " "]))
def test_every_written_form_is_the_instant_datetime_gives(when, offset, digits, zone, sep):
    text = written(when, offset, digits, zone, sep)
    assert parse_timestamp(text) == pytest.approx(reference(text), abs=1e-6)
    assert parse_timestamp(text.encode()) == parse_timestamp(text)          # raw bytes of a line too
    if sep == "T":
        assert wazuh_timestamp(text) == parse_timestamp(text)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="0123456789-:T .+Zz", min_size=0, max_size=32) | st.text(max_size=30))
def test_any_text_is_a_time_or_none_never_an_exception(text):
    value = parse_timestamp(text)
    if value is None:
        return
    assert isinstance(value, (int, float))
    # what it accepts, datetime accepts as the same instant
    assert value == pytest.approx(reference(text), abs=1e-6)


@settings(max_examples=300, deadline=None)
@given(st.integers(1970, 2200), st.integers(0, 15), st.integers(0, 35), st.integers(0, 26), st.integers(0, 63),
       st.integers(0, 63))
def test_impossible_dates_and_times_are_refused_like_datetime_refuses_them(year, month, day, hour, minute, second):
    text = f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}Z"
    try:
        expected = datetime(year, month, day, hour, minute, second, tzinfo=timezone.utc).timestamp()
    except ValueError:
        expected = None
    assert parse_timestamp(text) == expected


def test_a_zone_is_required_unless_utc_is_assumed():
    assert parse_timestamp("2024-01-31 23:59:00") is None
    assert parse_timestamp("2024-01-31 23:59:00", assume_utc=True) == 1706745540.0
    assert parse_timestamp("2024-01-31 23:59:00.5", assume_utc=True) == 1706745540.5


@pytest.mark.parametrize("text, epoch", [("2022-01-24", 1642982400.0), ("2022-01-24T03:00", 1642993200.0),
                                         ("2022-01-24 03:00:00", 1642993200.0), ("2022-01-24T03:00:00Z", 1642993200.0),
                                         ("2022-01-24T04:00:00+01:00", 1642993200.0),
                                         ("2022-01-24T03:55:00.000+0000", 1642996500.0)])
def test_times_and_dates_given_by_a_user_are_utc_unless_zoned(text, epoch):
    assert parse_time_arg(text) == epoch


@pytest.mark.parametrize("text", ["yesterday", "2022-02-30", "2022-01-24T25:00", "24/01/2022", ""])
def test_a_user_time_that_is_not_one_is_a_config_error_sentence(text):
    with pytest.raises(ConfigError, match=r"is not a date or time; use ISO 8601 such as 2022-01-24"):
        parse_time_arg(text)


def test_the_parser_imports_no_datetime_re_or_calendar():
    code = ("import sys; from wazuh_anomaly.core.timeparse import parse_timestamp; "
            "parse_timestamp('2022-01-24T03:57:12.345+0000'); "
            "print(sorted(m for m in ('datetime', 're', 'calendar', 'typing', 'dataclasses') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(REPO / "integration")}).stdout
    assert out.strip() == "[]"
