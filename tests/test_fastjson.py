"""engine/fastjson.py gives what ``json`` gives (it calls the same C accelerator, without the
``json`` package's imports): the same text for every kind of JSON data, the same values back,
and JSON text (``json_text``) the same as before it moved there."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from lacrimosa.engine import fastjson
from lacrimosa.engine.fastjson import dumps, dumps_indented, json_text, loads

# Text with the characters that matter here: controls, DEL, C1, line separators, surrogates.
_text = st.text(
    st.one_of(
        st.characters(),
        st.sampled_from('\x00\x1b\x7f\x85\x9b\u2028\u2029\ud800\udfff"\\é☃'),
    )
)
_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    _text,
)
_json_data = st.recursive(
    _leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(_text, children, max_size=4),
    ),
    max_leaves=30,
)


def _old_json_text(value: Any, indent: int | None = None) -> str:
    """json_text as terminal_text wrote it before (re.sub over json.dumps)."""
    unsafe = "[\x7f-\x9f\u2028\u2029\ud800-\udfff]+"
    text = json.dumps(value, ensure_ascii=False, indent=indent)
    return re.sub(unsafe, lambda m: "".join(f"\\u{ord(c):04x}" for c in m.group()), text)


@given(_json_data)
def test_dumps_is_json_dumps(value: Any) -> None:
    assert dumps(value) == json.dumps(value, ensure_ascii=False)
    assert dumps(value, compact=True) == json.dumps(
        value, ensure_ascii=False, separators=(",", ":")
    )
    assert dumps_indented(value) == json.dumps(value, ensure_ascii=False, indent=2)


@given(_json_data)
def test_json_text_is_what_it_was(value: Any) -> None:
    assert json_text(value) == _old_json_text(value)
    assert json_text(value, indent=2) == _old_json_text(value, indent=2)


@given(_json_data)
@example("line\u2028separator")  # each of the three lead bytes the quick check looks for
@example("paragraph\u2029")
@example("c1 \x9b")
@example("del \x7f")
def test_escaping_utf8_bytes_is_escaping_the_text(value: Any) -> None:
    text = _old_json_text(value)  # its lone surrogates escaped: the rest is valid UTF-8
    raw = json.dumps(value, ensure_ascii=False)
    unescaped = re.sub("[\ud800-\udfff]", lambda m: f"\\u{ord(m.group()):04x}", raw)
    assert fastjson.escape_controls_utf8(unescaped.encode()) == text.encode()
    assert fastjson.escape_controls(raw) == text


@given(_json_data, st.sampled_from(["", " ", "\n", " \t\r\n"]))
def test_loads_is_json_loads(value: Any, space: str) -> None:
    text = space + json.dumps(value, ensure_ascii=False) + space
    expected = json.loads(text)
    # NaN is not equal to itself: compare the texts of what came back.
    assert json.dumps(loads(text.encode("utf-8", "surrogatepass"))) == json.dumps(expected)
    assert json.dumps(loads(text)) == json.dumps(expected)


@pytest.mark.parametrize(
    "data", [b"", b"   ", b"{", b'{"a": 1} x', b'{"a": 1}{}', b"\xff", b"nul", b"[1,]"]
)
def test_loads_refuses_what_json_refuses(data: bytes) -> None:
    with pytest.raises(ValueError):
        json.loads(data)
    with pytest.raises(ValueError):
        loads(data)


def test_other_values_are_left_to_json() -> None:
    # Non-string keys are converted by json, other types refused by it, as before.
    assert dumps_indented({1: [True, None]}) == json.dumps({1: [True, None]}, indent=2)
    assert json_text({2.5: "x"}, indent=2) == _old_json_text({2.5: "x"}, indent=2)
    with pytest.raises(TypeError, match="not JSON serializable"):
        dumps({"a": object()})
    with pytest.raises(TypeError, match="not JSON serializable"):
        dumps_indented({"a": {1, 2}})
    circular: list[Any] = []
    circular.append(circular)
    with pytest.raises(ValueError):
        dumps(circular)
    assert json_text([1], indent=4) == json.dumps([1], indent=4)


def test_the_c_accelerator_is_used() -> None:
    # Otherwise every call would import json, and the point of the module would be lost.
    assert fastjson._json is not None and fastjson._scan is not None
