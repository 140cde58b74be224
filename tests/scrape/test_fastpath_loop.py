"""The scrape loop with its default `IncrementalParser` commits exactly what it commits with
the stateless `textparse.parse`: samples, stale markers, report values, errors, metadata."""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.config import ScrapeConfig
from collector.model import textparse
from collector.model.labels import Labels
from collector.model.value import float_bits
from tests.model.test_fastpath_incremental import _EDIT, OM_SEEDS, TEXT_SEEDS, _edit
from tests.scrape.scrapekit import Harness, harness

OM = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def _commits(h: Harness) -> list[list[tuple[Labels, int, int]]]:
    """Every commit, values by bits; the wall-clock-dependent duration is masked."""
    out = []
    for commit in h.appender.commits:
        rows: list[tuple[Labels, int, int]] = []
        for labels, value, ts in commit:
            name = dict(labels)["__name__"]
            bits = 0 if name == "scrape_duration_seconds" else float_bits(value)
            rows.append((labels, bits, ts))
        out.append(sorted(rows, key=repr))
    return out


def _run(bodies: list[bytes], *, om: bool, cfg: ScrapeConfig | None) -> None:
    content_type = OM if om else "text/plain; version=0.0.4"
    fast = harness(*bodies, cfg=cfg, content_type=content_type)
    full = harness(*bodies, cfg=cfg, content_type=content_type)
    full.loop._parse = textparse.parse

    async def go() -> None:
        for _ in bodies:
            await fast.scrape()
            await full.scrape()
            assert fast.loop.target.last_error == full.loop.target.last_error
            assert fast.loop.cache.metadata == full.loop.cache.metadata
            assert set(fast.loop.cache.series) == set(full.loop.cache.series)

    asyncio.run(go())
    assert _commits(fast) == _commits(full)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    seed=st.sampled_from([(s, False) for s in TEXT_SEEDS] + [(s, True) for s in OM_SEEDS]),
    steps=st.lists(st.lists(_EDIT, max_size=2), min_size=1, max_size=6),
    honor=st.booleans(),
    limit=st.sampled_from([0, 3, 1000]),
)
def test_loop_commits_agree(
    seed: tuple[bytes, bool],
    steps: list[list[tuple[str, int, bytes]]],
    honor: bool,
    limit: int,
) -> None:
    """Sequences of mutated bodies: identical commits, errors and cache contents."""
    body, om = seed
    bodies = [body]
    for step in steps:
        for edit in step:
            body = _edit(body, edit)
        bodies.append(body)
    cfg = ScrapeConfig(
        job_name="j",
        scrape_interval=15.0,
        scrape_timeout=10.0,
        honor_timestamps=honor,
        sample_limit=limit,
    )
    _run(bodies, om=om, cfg=cfg)


def test_steady_state_values_change() -> None:
    """Plain steady state: new values every scrape, a vanished and a returning series."""
    _run(
        [b"a 1\nb 2\n", b"a 2\nb 3\n", b"a 3\nb 4\n", b"a 4\nc 4\n", b"a 5\nc 5\n"],
        om=False,
        cfg=None,
    )
