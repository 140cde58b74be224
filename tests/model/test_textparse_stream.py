"""`textparse.StreamParser`: a body parsed in segments is the body parsed whole.

Every body is fed in chunks (fixed and random cut points, tiny segments so that every body
spans many segments) and compared with `parse` over the whole body: samples by float bits,
the error (message, line, partial samples), metadata, and the labels of each key where it
first appears (what the scrape cache asks on a miss).
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.data import ksm_body, node_exporter_body
from collector.errors import ParseError
from collector.model.textparse import Exposition, ExpositionError, StreamParser, parse
from collector.model.value import float_bits
from tests.model.test_textparse import INVALID_OM, INVALID_TEXT, LABELS, VALID_OM, VALID_TEXT

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "exposition"

Outcome = tuple[
    list[tuple[bytes, int, int | None]],  # samples, values by bits
    tuple[str, int, list[bytes]] | None,  # error: message, line, keys of the partial samples
    dict[bytes, list[tuple[str, str]] | str],  # first-seen key -> labels or label error
    object,  # metadata (None after an error)
]


def _labels(exp: Exposition, key: bytes) -> list[tuple[str, str]] | str:
    try:
        return exp.labels(key)
    except ExpositionError as exc:
        return f"{exc.line}: {exc.message}"


def _whole(body: bytes, *, openmetrics: bool) -> Outcome:
    """The reference: `parse` over the whole body."""
    try:
        exp = parse(body, openmetrics=openmetrics)
    except ExpositionError as exc:
        keys = exc.partial.columns()[0]
        return _fold([exc.partial]), (exc.message, exc.line, keys), _first(exc.partial), None
    return _fold([exp]), None, _first(exp), exp.metadata


def _streamed(
    body: bytes, cuts: list[int], *, openmetrics: bool, segment_size: int, max_entry: int = 1 << 20
) -> Outcome:
    """The same body fed in the chunks between ``cuts``."""
    parser = StreamParser(openmetrics=openmetrics, segment_size=segment_size, max_entry=max_entry)
    results: list[Exposition] = []
    first: dict[bytes, list[tuple[str, str]] | str] = {}
    error = None
    try:
        for chunk in _chunks(body, cuts):
            exp = parser.feed(chunk)
            if exp is not None:
                results.append(exp)
                first |= {k: v for k, v in _first(exp).items() if k not in first}
        exp = parser.close()
        results.append(exp)
        first |= {k: v for k, v in _first(exp).items() if k not in first}
    except ExpositionError as exc:
        results.append(exc.partial)
        first |= {k: v for k, v in _first(exc.partial).items() if k not in first}
        keys = [key for part in results for key in part.columns()[0]]
        error = (exc.message, exc.line, keys)
    return _fold(results), error, first, None if error else parser.metadata


def _fold(parts: list[Exposition]) -> list[tuple[bytes, int, int | None]]:
    return [(k, float_bits(v), t) for part in parts for k, v, t in part.samples]


def _first(exp: Exposition) -> dict[bytes, list[tuple[str, str]] | str]:
    out: dict[bytes, list[tuple[str, str]] | str] = {}
    for key in exp.columns()[0]:
        if key not in out:
            out[key] = _labels(exp, key)
    return out


def _chunks(body: bytes, cuts: list[int]) -> Iterator[bytes]:
    start = 0
    for cut in sorted(cuts):
        yield body[start:cut]
        start = cut
    yield body[start:]


def _table_bodies() -> list[tuple[str, bytes, bool]]:
    bodies = [(p.name, p.read_bytes(), p.suffix == ".om") for p in sorted(FIXTURES.iterdir())]
    bodies += [("node_exporter", node_exporter_body(), False), ("ksm", ksm_body(200), False)]
    for table, om in ((VALID_TEXT + LABELS + INVALID_TEXT, False), (VALID_OM + INVALID_OM, True)):
        bodies += [(str(p.id), p.values[0], om) for p in table]  # type: ignore[misc]
    return bodies


@pytest.mark.parametrize(
    ("body", "openmetrics"),
    [pytest.param(body, om, id=name) for name, body, om in _table_bodies()],
)
@pytest.mark.parametrize("step", [1, 7, 4096])
def test_table_bodies_stream_like_whole(body: bytes, openmetrics: bool, step: int) -> None:
    """Every table and fixture body, in chunks of 1, 7 or 4096 bytes, parses as when whole."""
    cuts = list(range(step, len(body), step))
    expected = _whole(body, openmetrics=openmetrics)
    assert _streamed(body, cuts, openmetrics=openmetrics, segment_size=16) == expected


SEEDS = [
    b'# HELP a x\n# TYPE a histogram\na_bucket{le="1",b="c\\"d"} 1 123\na_sum 2\n\n# c\n'
    b'# TYPE s summary\ns{quantile="0.50"} 1\nm{a="x\ny\nz",b="w"} 3\nn 4\n',
    b'# TYPE r counter\n# UNIT r_s s\nr_total{a="b"} 1 1.5 # {t="x"} 2 3\n'
    b'# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\n# EOF\n',
    node_exporter_body()[:3000].rsplit(b"\n", 1)[0] + b"\n",
]
_ALPHABET = st.sampled_from(list(b' \t\n\r#{}",=\\_.+-0123456789aeEInNfpx\xff'))


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    seed=st.sampled_from(range(len(SEEDS))),
    edits=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=3000),
            st.sampled_from(["ins", "del", "set"]),
            _ALPHABET,
        ),
        max_size=4,
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=12),
    segment_size=st.integers(min_value=1, max_value=200),
    openmetrics=st.booleans(),
)
def test_mutated_bodies_stream_like_whole(
    seed: int,
    edits: list[tuple[int, str, int]],
    cuts: list[int],
    segment_size: int,
    openmetrics: bool,
) -> None:
    """Mutated bodies at random cut points and segment sizes: same outcome as whole."""
    body = bytearray(SEEDS[seed])
    for where, how, byte in edits:
        at = where % (len(body) + 1)
        if how == "ins":
            body[at:at] = bytes([byte])
        elif body and at < len(body):
            body[at : at + 1] = b"" if how == "del" else bytes([byte])
    data = bytes(body)
    points = [cut % (len(data) + 1) for cut in cuts]
    expected = _whole(data, openmetrics=openmetrics)
    got = _streamed(data, points, openmetrics=openmetrics, segment_size=segment_size)
    assert got == expected


def test_cut_inside_a_quoted_value_is_carried() -> None:
    """A raw newline in a text label value at a segment cut: the entry moves to the next one."""
    body = b'a 1\nm{v="one\ntwo\nthree"} 2\nz 3\n'
    parser = StreamParser(openmetrics=False, segment_size=1)
    first = parser.feed(body[:13])  # "a 1\nm{v=\"one\n": the cut is inside the value
    assert first is not None
    assert first.columns()[0] == [b"a"]
    second = parser.feed(body[13:])
    assert second is not None
    assert second.columns()[0] == [b'm{v="one\ntwo\nthree"}', b"z"]
    assert second.labels(b'm{v="one\ntwo\nthree"}')[1] == ("v", "one\ntwo\nthree")
    assert parser.close().columns()[0] == []


def test_unterminated_quote_longer_than_max_entry_is_reported() -> None:
    """A genuine unterminated quote is not carried forever: past max_entry it is the error."""
    body = b'a 1\nm{v="oops} 2\n' + b"x 1\n" * 100
    with pytest.raises(ExpositionError) as info:
        _streamed_raise(body, step=8, max_entry=64)
    assert info.value.line == 2
    assert "expected label value" in info.value.message


def _streamed_raise(body: bytes, *, step: int, max_entry: int) -> None:
    parser = StreamParser(openmetrics=False, segment_size=16, max_entry=max_entry)
    for chunk in _chunks(body, list(range(step, len(body), step))):
        parser.feed(chunk)
    parser.close()


def test_errors_count_lines_from_the_body_start() -> None:
    """An error in a later segment reports its line in the whole body."""
    body = b"".join(b"m%d 1\n" % i for i in range(1000)) + b"bad{ 1\n"
    parser = StreamParser(openmetrics=False, segment_size=100)
    keys: list[bytes] = []
    error: ParseError | None = None
    try:
        for chunk in _chunks(body, list(range(64, len(body), 64))):
            exp = parser.feed(chunk)
            keys += exp.columns()[0] if exp is not None else []
        parser.close()
    except ExpositionError as exc:
        error = exc
        keys += exc.partial.columns()[0]
    assert error is not None
    assert error.line == 1001
    assert len(keys) == 1000


def test_type_in_force_crosses_segments() -> None:
    """A histogram TYPE in one segment canonicalises le in the next; metadata is folded."""
    body = b"# HELP h help\n# TYPE h histogram\n" + b"pad 1\n" * 50 + b'h_bucket{le="1"} 1\n'
    body += b"# UNIT h x\n# TYPE g gauge\n" + b"pad 1\n" * 50 + b'g{le="1"} 1\n'
    parser = StreamParser(openmetrics=False, segment_size=64)
    parts = [parser.feed(chunk) for chunk in _chunks(body, list(range(64, len(body), 64)))]
    parts.append(parser.close())
    by_key = {k: exp for exp in parts if exp is not None for k in exp.columns()[0]}
    assert by_key[b'h_bucket{le="1"}'].labels(b'h_bucket{le="1"}')[1] == ("le", "1.0")
    assert by_key[b'g{le="1"}'].labels(b'g{le="1"}')[1] == ("le", "1")
    assert parser.metadata == parse(body, openmetrics=False).metadata


def test_openmetrics_eof_is_held_back_until_the_end() -> None:
    """``# EOF`` at a cut is not taken as the end until the body says nothing follows."""
    parser = StreamParser(openmetrics=True, segment_size=1)
    assert parser.feed(b"a 1\n") is not None
    assert parser.feed(b"# EOF\n") is None
    with pytest.raises(ExpositionError, match="unexpected data after # EOF") as info:
        parser.feed(b"b 2\n")
    assert info.value.line == 2
    ended = StreamParser(openmetrics=True, segment_size=1)
    ended.feed(b"a 1\n# EOF\n")
    assert ended.close().columns()[0] == []


def test_openmetrics_without_eof_fails_at_the_end() -> None:
    """An OpenMetrics body that ends after whole segments without ``# EOF`` is refused."""
    parser = StreamParser(openmetrics=True, segment_size=1)
    assert parser.feed(b"a 1\n") is not None
    with pytest.raises(ExpositionError, match="does not end with # EOF") as info:
        parser.close()
    assert info.value.line == 0


def test_memory_is_bounded_by_the_segment_not_the_body() -> None:
    """A 20 MB body in 64 KB chunks: the parser's peak is a few segments, not the body."""
    block = b"".join(b'm{shard="%d",pod="pod-%d"} %d\n' % (i % 7, i, i) for i in range(2000))
    copies = 20_000_000 // len(block)
    chunks = [block[i : i + 65536] for i in range(0, len(block), 65536)] * copies
    count = 0
    tracemalloc.start()
    try:
        parser = StreamParser(openmetrics=False)
        for chunk in chunks:
            exp = parser.feed(chunk)
            if exp is not None:
                count += len(exp.columns()[0])
        count += len(parser.close().columns()[0])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == 2000 * copies
    assert peak < 8 * 1024 * 1024, peak
