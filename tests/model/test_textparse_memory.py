"""What an `IncrementalParser` keeps between scrapes: the structure, not the regex rows."""

from __future__ import annotations

import pytest

from benchmarks.data import node_exporter_body
from collector.model.textparse import ExpositionError, IncrementalParser, incremental, parse

HIST = b"""# HELP h a histogram
# TYPE h histogram
h_bucket{le="1"} 1
h_bucket{le="+Inf"} 2
h_count 2
# TYPE s summary
s{quantile="0.5"} 3
"""


def test_remembered_shape_drops_rows_and_keeps_results() -> None:
    body = node_exporter_body()
    parser = IncrementalParser()
    first = parser.parse(body, openmetrics=False)
    reference = parse(body, openmetrics=False)
    assert first._shape.rows is None  # compacted: no per-line row tuples kept
    keys = first.columns()[0]
    assert keys == reference.columns()[0]
    assert first.metadata == reference.metadata
    for key in keys:
        assert first.labels(key) == reference.labels(key)
    again = parser.parse(body, openmetrics=False)
    assert again._shape is first._shape
    assert again.columns() == reference.columns()


def test_compacted_shape_canonicalises_and_numbers_lines() -> None:
    parser = IncrementalParser()
    exp = parser.parse(HIST, openmetrics=False)
    assert exp._shape.rows is None
    assert exp.labels(b'h_bucket{le="1"}') == [("__name__", "h_bucket"), ("le", "1.0")]
    assert exp.labels(b's{quantile="0.5"}') == [("__name__", "s"), ("quantile", "0.5")]
    steady = parser.parse(HIST.replace(b"} 1\n", b"} 5\n"), openmetrics=False)
    assert steady._shape is exp._shape
    assert steady.labels(b'h_bucket{le="+Inf"}') == [("__name__", "h_bucket"), ("le", "+Inf")]
    assert steady._line_of(3) == 7
    assert steady.metadata["h"].type == "histogram"


def test_compacted_shape_reports_duplicate_label_line() -> None:
    body = b'# TYPE m gauge\nm 1\nm{a="1",a="2"} 2\n'
    parser = IncrementalParser()
    exp = parser.parse(body, openmetrics=False)
    with pytest.raises(ExpositionError) as info:
        exp.labels(b'm{a="1",a="2"}')
    assert info.value.line == 3


def test_label_names_are_shared_objects() -> None:
    a = parse(b'm{mode="idle"} 1\n', openmetrics=False).labels(b'm{mode="idle"}')
    b = parse(b'm{mode="user"} 1\n', openmetrics=False).labels(b'm{mode="user"}')
    assert a[1][0] is b[1][0]
    assert a[0][1] is b[0][1]


def test_metadata_source_holds_only_the_structure() -> None:
    exp = IncrementalParser().parse(HIST, openmetrics=False)
    source = exp.metadata_source()
    assert not hasattr(source, "_values")
    assert source.metadata == parse(HIST, openmetrics=False).metadata


def test_parsers_share_their_line_index_objects() -> None:
    """The pickers of every target's parser hold the same int objects (not 32 B per line each)."""
    body = node_exporter_body()
    first, second = IncrementalParser(), IncrementalParser()
    first.parse(body, openmetrics=False)
    second.parse(body + b"# one more comment\n", openmetrics=False)
    for attr in ("_pick_samples", "_pick_fixed"):
        a = getattr(first, attr).__reduce__()[1]
        b = getattr(second, attr).__reduce__()[1]
        assert a[-1] > 256
        assert a[-1] is b[b.index(a[-1])]  # equal ints, one object


OM_BODY = (
    b'# TYPE r counter\n# UNIT r_s s\n# HELP r_s a \\"quoted\\" help\n'
    b"r_s_total 1\n# TYPE h histogram\n"
    b'h_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\nh_count 2\nh_sum 1\n# EOF\n'
)


@pytest.mark.parametrize(
    ("body", "openmetrics"),
    [(HIST, False), (HIST.rstrip(b"\n"), False), (OM_BODY, True), (b"only 1\n", False)],
)
def test_compacted_shape_keeps_no_metadata_rows_or_segments(body: bytes, openmetrics: bool) -> None:
    """Metadata rows and TYPE segments are rebuilt from the kept lines, never stored."""
    parser = IncrementalParser()
    exp = parser.parse(body, openmetrics=openmetrics)
    reference = parse(body, openmetrics=openmetrics)
    for key in reference.columns()[0]:
        assert exp.labels(key) == reference.labels(key)
    assert exp.metadata == reference.metadata
    shape = exp._shape
    assert shape.rows is None
    assert shape.meta_rows is None
    assert shape.segments is None
    steady = parser.parse(body.replace(b"} 1\n", b"} 9\n"), openmetrics=openmetrics)
    assert steady._shape is shape
    assert steady.metadata == reference.metadata


def test_older_exposition_keeps_its_structure_after_the_parser_moves_on() -> None:
    parser = IncrementalParser()
    old = parser.parse(HIST, openmetrics=False)
    other = b'# HELP z other\n# TYPE z summary\nz{quantile="1"} 1\n'
    assert parser.parse(other, openmetrics=False).metadata["z"].type == "summary"
    assert old.metadata == parse(HIST, openmetrics=False).metadata
    assert old.labels(b'h_bucket{le="1"}') == [("__name__", "h_bucket"), ("le", "1.0")]


def test_metadata_strings_are_shared_across_targets() -> None:
    first = IncrementalParser().parse(HIST, openmetrics=False).metadata
    second = IncrementalParser().parse(HIST, openmetrics=False).metadata
    assert first["h"].help == "a histogram"
    assert first["h"].help is second["h"].help
    assert next(iter(first)) is next(iter(second))


def test_parsers_of_bodies_with_the_same_comments_share_them() -> None:
    """HELP/TYPE lines, the sample mask and the pickers are kept once for every target whose
    body has exactly the same non-sample lines and sample lines, and leave with the last
    parser keeping them."""
    body = node_exporter_body()
    other_values = body.replace(b" 0\n", b" 7\n")
    first, second, third = IncrementalParser(), IncrementalParser(), IncrementalParser()
    first.parse(body, openmetrics=False)
    second.parse(other_values, openmetrics=False)
    third.parse(b"# HELP x other\n" + body, openmetrics=False)
    assert first._fixed is second._fixed
    assert first._fixed[0] is second._fixed[0]
    # The mask and the pickers are the structure's too (a tuple of line indices each).
    assert first._mask is second._mask
    assert first._pick_samples is second._pick_samples
    assert first._pick_fixed is second._pick_fixed
    assert third._pick_samples is not first._pick_samples
    assert third._fixed is not first._fixed
    before = len(incremental._STRUCTURES)
    del first
    assert len(incremental._STRUCTURES) == before
    second.reset()
    assert len(incremental._STRUCTURES) == before - 1
    steady = third.parse(b"# HELP x other\n" + other_values, openmetrics=False)
    assert steady.metadata == parse(b"# HELP x other\n" + body, openmetrics=False).metadata


def test_same_comments_with_samples_on_other_lines_is_another_structure() -> None:
    """Equal non-sample lines alone do not make a structure: the samples' lines count too (a
    shared picker of the wrong lines would read comments as samples)."""
    one = b"# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\n"
    other = b'# TYPE a gauge\na 1\na{x="y"} 1\n# TYPE b gauge\n'
    first, second = IncrementalParser(), IncrementalParser()
    first.parse(one, openmetrics=False)
    second.parse(other, openmetrics=False)
    assert first._fixed == second._fixed  # the same non-sample lines, other sample lines
    assert first._pick_samples is not second._pick_samples
    steady = second.parse(other.replace(b" 1\n", b" 2\n"), openmetrics=False)
    assert steady.columns()[1] == [2.0, 2.0]
    assert first.parse(one.replace(b" 1\n", b" 3\n"), openmetrics=False).columns()[1] == [3.0, 3.0]


def test_targets_of_one_structure_share_one_metadata_dict() -> None:
    """Metadata is folded once per structure, not once per target (34 B a series on W1); the
    same bytes parsed as OpenMetrics and as text still get each their own (HELP unescaping
    differs)."""
    body = node_exporter_body()
    first, second = IncrementalParser(), IncrementalParser()
    a = first.parse(body, openmetrics=False)
    b = second.parse(body.replace(b" 0\n", b" 7\n"), openmetrics=False)
    assert a.metadata is b.metadata
    assert a.metadata == parse(body, openmetrics=False).metadata
    same = b'# HELP x a \\"quoted\\" help\n# TYPE x gauge\nx 1\n# EOF\n'
    om_parser, text_parser = IncrementalParser(), IncrementalParser()
    om_meta = om_parser.parse(same, openmetrics=True).metadata
    text_meta = text_parser.parse(same, openmetrics=False).metadata
    assert om_parser._shape is not None  # both remembered
    assert text_parser._shape is not None
    assert om_meta["x"].help == parse(same, openmetrics=True).metadata["x"].help
    assert text_meta["x"].help == parse(same, openmetrics=False).metadata["x"].help
    assert text_meta["x"].help != om_meta["x"].help
