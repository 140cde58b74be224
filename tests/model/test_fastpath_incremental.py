"""`textparse.IncrementalParser` (steady-state fast path) is indistinguishable from `parse`.

Sequences of mutated bodies run through one stateful `IncrementalParser` and through the
stateless `parse`; every step must give identical samples (by float bits), errors (message,
line, partial samples), metadata, labels and exemplars.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.data import ksm_body, node_exporter_body
from collector.errors import ParseError
from collector.model import textparse
from collector.model.textparse import Exposition, ExpositionError, IncrementalParser, parse
from collector.model.value import NORMAL_NAN_BITS, float_bits

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

TEXT_SEEDS = [
    b"# HELP a x\n# TYPE a histogram\n"
    b'a_bucket{le="1",b="c"} 1\na_bucket{le="+Inf",b="c"} 2 123\na_sum 2\na_count 2\n'
    b"\n# c\n"
    b'# TYPE s summary\ns{quantile="0.50"} 1\ns_sum 3\nplain 7\nplain 8\n',
    b'm{a="x"} 1\nm{a="y"} 2\nn 3',  # no final newline
    b'dup{a="1",a="2"} 1\nok 2\n',
    b'esc{a="q\\"uote"} 1\nother{b="\\\\"} 2\n',
    node_exporter_body()[:3000].rsplit(b"\n", 1)[0] + b"\n",
]
OM_SEEDS = [
    b"# TYPE r counter\n# UNIT r_s s\n# HELP r_s help\nr_s_total 1\nr_s_created 2 1.5\n"
    b'# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\nh_count 2\nh_sum 1\n# EOF\n',
    b'g{a="b"} 1\ng{a="c"} 2\n# EOF',
    b'e_total 1 # {t="x"} 2 3\n# EOF\n',
]

# Replacement value tokens: valid Go floats and near misses Python's float() would take.
_TOKENS = [
    b"0",
    b"1",
    b"-1.5",
    b"1e3",
    b"+.5",
    b"5.",
    b"007",
    b"1e999",
    b"-1e999",
    b"Inf",
    b"+inf",
    b"-Infinity",
    b"NaN",
    b"nan",
    b"+nan",
    b"-NaN",
    b"1_0",
    b"0x10",
    b"0x1p3",
    b"1e",
    b".",
    b"",
    b"1 123",
    b"1 1234567890123456789",
    b"1 1.5",
    b"1  2",
    b"1 2 3",
    b"1\t",
    b" 1",
    b'1 # {a="b"} 1',
    b"infinity",
    b"in",
    b"1.5e+10",
    b"\xff",
]


def _set_value(body: bytes, line_no: int, token: bytes) -> bytes:
    """Replace what follows the series key of sample line ``line_no`` (mod sample lines)."""
    lines = body.split(b"\n")
    samples = [i for i, line in enumerate(lines) if line and not line.startswith(b"#")]
    if not samples:
        return body
    i = samples[line_no % len(samples)]
    line = lines[i]
    end = line.rfind(b"}") + 1 if b"{" in line else line.find(b" ")
    if end <= 0:
        return body
    lines[i] = line[:end] + b" " + token
    return b"\n".join(lines)


_EDIT = st.one_of(
    st.tuples(st.just("value"), st.integers(0, 200), st.sampled_from(_TOKENS)),
    st.tuples(
        st.sampled_from(["ins", "del", "set"]),
        st.integers(0, 4000),
        st.sampled_from([bytes([b]) for b in b' \t\n#{}",=\\_.+-0123456789aeEInNfpx\xff']),
    ),
)


def _edit(body: bytes, edit: tuple[str, int, bytes]) -> bytes:
    how, where, data = edit
    if how == "value":
        return _set_value(body, where, data)
    buf = bytearray(body)
    at = where % (len(buf) + 1)
    if how == "ins":
        buf[at:at] = data
    elif at < len(buf):
        buf[at : at + 1] = b"" if how == "del" else data
    return bytes(buf)


def _outcome(run: object) -> tuple[str, object]:
    """Everything observable about one parse: samples, labels, metadata, or the error."""
    try:
        exp = run()  # type: ignore[operator]
    except ExpositionError as exc:
        return "error", (exc.message, exc.line, _samples(exc.partial))
    assert isinstance(exp, Exposition)
    labels: list[object] = []
    for key, _, _ in exp.samples:
        try:
            labels.append(exp.labels(key))
        except ParseError as exc:
            labels.append(("error", str(exc)))
    columns = exp.columns()
    assert list(zip(*columns[:2], strict=True)) == [(k, v) for k, v, _ in exp.samples]
    return "ok", (
        _samples(exp),
        labels,
        exp.metadata,
        sorted(exp.exemplars),
    )


def _samples(exp: Exposition) -> list[tuple[bytes, int, int | None]]:
    return [(k, float_bits(v), t) for k, v, t in exp.samples]


def _check_sequence(seed: bytes, edits: list[list[tuple[str, int, bytes]]], om: bool) -> None:
    parser = IncrementalParser()
    body = seed
    for step in [[], *edits]:
        for edit in step:
            body = _edit(body, edit)
        fast = _outcome(lambda b=body: parser.parse(b, openmetrics=om))
        full = _outcome(lambda b=body: parse(b, openmetrics=om))
        assert fast == full, body
        if step and fast[0] == "error":
            body = seed  # start over from a valid body (keeps the fast path exercised)


_STEPS = st.lists(st.lists(_EDIT, min_size=0, max_size=3), min_size=1, max_size=6)


@SETTINGS
@given(seed=st.sampled_from(TEXT_SEEDS), edits=_STEPS)
def test_text_sequences_agree(seed: bytes, edits: list[list[tuple[str, int, bytes]]]) -> None:
    """Text format: the stateful parser equals the stateless one at every step."""
    _check_sequence(seed, edits, om=False)


@SETTINGS
@given(seed=st.sampled_from(OM_SEEDS), edits=_STEPS)
def test_openmetrics_sequences_agree(
    seed: bytes, edits: list[list[tuple[str, int, bytes]]]
) -> None:
    """OpenMetrics: the stateful parser equals the stateless one at every step."""
    _check_sequence(seed, edits, om=True)


@SETTINGS
@given(seed=st.sampled_from(TEXT_SEEDS + OM_SEEDS), edits=_STEPS, om=st.booleans())
def test_format_switch_agrees(
    seed: bytes, edits: list[list[tuple[str, int, bytes]]], om: bool
) -> None:
    """Bodies of either format parsed in the other one: still identical outcomes."""
    _check_sequence(seed, edits, om=om)


def test_steady_state_takes_the_fast_path_and_shares_structure() -> None:
    """Same lines, new values: keys are the same objects, metadata is not rebuilt."""
    parser = IncrementalParser()
    body = node_exporter_body()
    first = parser.parse(body, openmetrics=False)
    meta = first.metadata
    second_body = _set_value(_set_value(body, 3, b"42"), 7, b"NaN")
    second = parser.parse(second_body, openmetrics=False)
    assert second.columns()[0] is first.columns()[0]
    assert second.metadata is meta
    assert _samples(second) == _samples(parse(second_body, openmetrics=False))
    assert float_bits(second.samples[7][1]) == NORMAL_NAN_BITS
    assert second.samples[3][1] == 42.0


def test_ksm_steady_state_with_timestamps() -> None:
    """Explicit timestamps on the fast path give the full path's values."""
    parser = IncrementalParser()
    body = ksm_body()
    parser.parse(body, openmetrics=False)
    stamped = _set_value(body, 0, b"5 1700000000000")
    assert _samples(parser.parse(stamped, openmetrics=False)) == _samples(
        parse(stamped, openmetrics=False)
    )


def test_changed_structure_falls_back() -> None:
    """A changed comment, key or line count takes the full path (and is then remembered)."""
    parser = IncrementalParser()
    parser.parse(b"# TYPE a gauge\na 1\n", openmetrics=False)
    exp = parser.parse(b"# TYPE a counter\na 2\n", openmetrics=False)
    assert exp.metadata["a"].type == "counter"
    exp = parser.parse(b"# TYPE a counter\nb 2\n", openmetrics=False)
    assert exp.samples == [(b"b", 2.0, None)]
    exp = parser.parse(b"# TYPE a counter\nb 3\nc 4\n", openmetrics=False)
    assert [k for k, _, _ in exp.samples] == [b"b", b"c"]


def test_refused_values_are_refused_on_the_fast_path() -> None:
    """Tokens Go's ParseFloat refuses fail exactly like the full parse; whitespace variants
    (valid in the text format) parse exactly like the full parse."""
    for token in (b"1_0", b"0x10", b"+nan", b"-NaN", b"1e999", b"1e", b"", b"1\t", b" 1"):
        parser = IncrementalParser()
        parser.parse(b"a 1\nb 2\n", openmetrics=False)
        body = b"a 1\nb " + token + b"\n"
        expected = _outcome(lambda b=body: parse(b, openmetrics=False))
        assert _outcome(lambda b=body, p=parser: p.parse(b, openmetrics=False)) == expected
        if token not in (b"1\t", b" 1"):
            assert expected[0] == "error", token


def test_reset_forgets_structure() -> None:
    """`reset` makes the next body take the full path."""
    parser = IncrementalParser()
    parser.parse(b"a 1\n", openmetrics=False)
    parser.reset()
    assert parser.parse(b"a 2\n", openmetrics=False).samples == [(b"a", 2.0, None)]
    assert textparse.IncrementalParser is IncrementalParser
