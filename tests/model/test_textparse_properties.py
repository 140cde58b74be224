"""Property tests of `collector.model.textparse`: robustness, round trips, fast == slow."""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.data import node_exporter_body
from collector.errors import ParseError
from collector.model.textparse import parse
from collector.model.textparse.fast import NotFast, fast_om, fast_text
from collector.model.textparse.slow import SlowParser
from collector.model.value import NORMAL_NAN_BITS, float_bits

SETTINGS = settings(
    max_examples=150,
    deadline=None,  # shared CI machines: wall-clock deadlines would only add flakiness
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

SEEDS = [
    b'# HELP a x\n# TYPE a histogram\na_bucket{le="1",b="c\\"d"} 1 123\na_sum 2\n\n# c\n',
    b'# TYPE r counter\n# UNIT r_s s\nr_total{a="b"} 1 1.5 # {t="x"} 2 3\n# EOF\n',
    node_exporter_body()[:2000].rsplit(b"\n", 1)[0] + b"\n",
]


def _escape(value: str) -> str:
    """Exposition escaping of a label value: backslash, double quote, newline."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _exercise(body: bytes, *, openmetrics: bool) -> None:
    """Parse and read everything; only ParseError may escape."""
    try:
        exp = parse(body, openmetrics=openmetrics)
        for key, _, _ in exp.samples:
            exp.labels(key)
        _ = exp.metadata
    except ParseError:
        pass


@SETTINGS
@given(body=st.binary(max_size=300), openmetrics=st.booleans())
def test_arbitrary_bytes_raise_only_parse_error(body: bytes, openmetrics: bool) -> None:
    """Arbitrary bytes either parse or raise ParseError, in both formats, labels included."""
    _exercise(body, openmetrics=openmetrics)


_ALPHABET = st.sampled_from(list(b' \t\n\r#{}",=\\_.+-0123456789aeEInNfpx\xff\xc3'))


@SETTINGS
@given(
    seed=st.sampled_from(range(len(SEEDS))),
    edits=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=3000),
            st.sampled_from(["ins", "del", "set"]),
            _ALPHABET,
        ),
        min_size=1,
        max_size=4,
    ),
    openmetrics=st.booleans(),
)
def test_mutated_bodies(seed: int, edits: list[tuple[int, str, int]], openmetrics: bool) -> None:
    """Mutated valid bodies raise only ParseError, and the fast path agrees with the slow one."""
    body = bytearray(SEEDS[seed])
    for where, how, byte in edits:
        at = where % (len(body) + 1)
        if how == "ins":
            body[at:at] = bytes([byte])
        elif body and at < len(body):
            body[at : at + 1] = b"" if how == "del" else bytes([byte])
    data = bytes(body)
    _exercise(data, openmetrics=openmetrics)
    _assert_paths_agree(data, openmetrics=openmetrics)


def _assert_paths_agree(body: bytes, *, openmetrics: bool) -> None:
    """If the fast path accepts ``body``, the slow path must accept it with equal results."""
    if not body:
        return
    try:
        fast = fast_om(body) if openmetrics else fast_text(body)
    except NotFast:
        return
    slow = SlowParser(body, openmetrics=openmetrics).run()
    assert [(k, float_bits(v), t) for k, v, t in fast.samples] == [
        (k, float_bits(v), t) for k, v, t in slow.samples
    ]
    assert fast.metadata == slow.metadata
    assert fast.exemplars.keys() == slow.exemplars.keys()
    for key, _, _ in fast.samples:
        try:
            expected = slow.labels(key)
        except ParseError:
            continue
        assert fast.labels(key) == expected


_LABEL_TEXT = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=20)


@SETTINGS
@given(value=_LABEL_TEXT, openmetrics=st.booleans())
def test_label_value_escaping_round_trips(value: str, openmetrics: bool) -> None:
    """escape(v) inside a series comes back from labels() as exactly v."""
    body = f'm{{a="{_escape(value)}",b="x"}} 1\n'.encode()
    if openmetrics:
        body += b"# EOF\n"
    exp = parse(body, openmetrics=openmetrics)
    ((key, _, _),) = exp.samples
    assert exp.labels(key) == [("__name__", "m"), ("a", value), ("b", "x")]


_NAMES = st.from_regex(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,8}", fullmatch=True)
_LNAMES = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,6}", fullmatch=True)


@st.composite
def _bodies(draw: st.DrawFn) -> tuple[bytes, bool, list[tuple[str, dict[str, str], float]]]:
    """A valid body in the fast-path shape, plus what it should parse to."""
    openmetrics = draw(st.booleans())
    lines: list[str] = []
    expected: list[tuple[str, dict[str, str], float]] = []
    for _ in range(draw(st.integers(min_value=0, max_value=6))):
        name = draw(_NAMES)
        if draw(st.booleans()):
            lines.append(f"# HELP {name} {_escape(draw(_LABEL_TEXT))}")
        if draw(st.booleans()):
            lines.append(f"# TYPE {name} {draw(st.sampled_from(['counter', 'gauge']))}")
        labels = draw(
            st.dictionaries(_LNAMES.filter(lambda n: n != "__name__"), _LABEL_TEXT, max_size=3)
        )
        value = draw(st.floats(allow_nan=True, allow_infinity=True))
        pairs = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
        lines.append(f"{name}{{{pairs}}} {value!r}" if labels else f"{name} {value!r}")
        expected.append((name, labels, value))
    body = "".join(line + "\n" for line in lines) + ("# EOF\n" if openmetrics else "")
    return body.encode(), openmetrics, expected


@SETTINGS
@given(case=_bodies())
def test_generated_bodies(
    case: tuple[bytes, bool, list[tuple[str, dict[str, str], float]]],
) -> None:
    """Generated well-formed bodies parse to the expected values and labels on both paths."""
    body, openmetrics, expected = case
    exp = parse(body, openmetrics=openmetrics)
    assert len(exp.samples) == len(expected)
    for (key, value, ts), (name, labels, want) in zip(exp.samples, expected, strict=True):
        assert ts is None
        if math.isnan(want):
            assert float_bits(value) == NORMAL_NAN_BITS
        else:
            assert value == want
        assert exp.labels(key) == [("__name__", name), *labels.items()]
    _assert_paths_agree(body, openmetrics=openmetrics)
