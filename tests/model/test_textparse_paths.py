"""Which path parses a body: the regex fast path (`fast`) or the exact one (`slow`).

`test_textparse.py` checks that both give identical results whenever the fast path accepts a
body; this module pins *which* bodies it accepts, so a regression that silently sends common
bodies down the slow path (a several-fold slowdown, no wrong result) fails a test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.model import textparse
from collector.model.textparse import exposition, fast, incremental, slow, stream, syntax
from collector.model.textparse.fast import NotFast, fast_om, fast_text
from collector.model.textparse.slow import SlowParser

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "exposition"


def _fast(body: bytes, *, openmetrics: bool) -> textparse.Exposition | None:
    """Run only the whole-body regex path; None when it declines the body."""
    try:
        return fast_om(body) if openmetrics else fast_text(body)
    except NotFast:
        return None


def test_common_bodies_take_the_fast_path() -> None:
    """Well-formed bodies (text with blank lines, OpenMetrics with exemplars) stay fast."""
    assert _fast(b"# HELP a x\n# TYPE a gauge\n\na 1\n# c\n", openmetrics=False) is not None
    assert _fast((FIXTURES / "om_example.om").read_bytes(), openmetrics=True) is not None
    assert _fast(b'a{b="c\\\\"} 1\n', openmetrics=False) is not None


@pytest.mark.parametrize(
    ("body", "openmetrics"),
    [
        pytest.param(b'{"q.x"} 1\n', False, id="quoted-name"),
        pytest.param(b"a  1\n", False, id="two-spaces"),
        pytest.param(b'a{b="c"} 1\r\n', False, id="crlf"),
        pytest.param(b"a 1e400\n", False, id="overflow"),
        pytest.param(b'a{b="x\ny"} 1\n', False, id="raw-newline-in-value"),
        pytest.param(b"a 1\n\xff\n", False, id="invalid-utf8"),
        pytest.param(b"a 1\n", True, id="om-without-eof"),
        pytest.param(b"# UNIT a_x s\n# EOF\n", True, id="om-unit-not-suffix"),
        pytest.param(b"a 1 NaN\n# EOF\n", True, id="om-nan-timestamp"),
    ],
)
def test_unusual_or_invalid_bodies_go_to_the_exact_path(body: bytes, openmetrics: bool) -> None:
    """Bodies outside the fast-path shapes are declined, so the exact path decides them."""
    assert _fast(body, openmetrics=openmetrics) is None


def test_slow_path_numbers_lines_across_raw_newlines() -> None:
    """A raw newline inside a text label value advances the line count of later entries."""
    body = b'a{b="x\ny"} 1\nc 2\nd{ 3\n'
    with pytest.raises(textparse.ExpositionError) as info:
        SlowParser(body, openmetrics=False).run()
    assert info.value.line == 4
    assert [key for key, _, _ in info.value.partial.samples] == [b'a{b="x\ny"}', b"c"]
    assert info.value.partial._line_of(1) == 3


def test_package_reexports_its_public_names() -> None:
    """Every public name of the package is the object defined by its own module."""
    homes = {
        "Columns": exposition,
        "Exemplar": exposition,
        "Exposition": exposition,
        "ExpositionError": exposition,
        "Metadata": exposition,
        "Sample": exposition,
        "parse": fast,
        "IncrementalParser": incremental,
        "StreamParser": stream,
        "canonical_float": syntax,
    }
    assert sorted(textparse.__all__) == sorted(homes)
    for name, module in homes.items():
        assert getattr(textparse, name) is getattr(module, name)
    assert slow.SlowParser is SlowParser
