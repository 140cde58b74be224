"""Loop scheduling and end-of-run staleness on virtual time (spec §4.1, §4.9, §11 #25)."""

from __future__ import annotations

import asyncio

import pytest

from collector.model.value import STALE_NAN_BITS, float_bits
from collector.scrape.schedule import first_delay
from tests.scrape.scrapekit import EPOCH_NS, FakeWall, harness, names

REPORT = [
    "scrape_duration_seconds",
    "scrape_samples_post_metric_relabeling",
    "scrape_samples_scraped",
    "scrape_series_added",
    "up",
]


@pytest.mark.looptime
async def test_first_scrape_at_offset_then_every_interval() -> None:
    """The first scrape waits for the target's slot, then ticks every 15 s exactly."""
    h = harness(b"a 1\n", wall=FakeWall(follow_loop=True))
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    delay = first_delay(
        fingerprint=h.loop.target.fingerprint,
        seed=0,
        interval=15.0,
        now_ns=EPOCH_NS + round(t0 * 1e9),
    )
    assert 0 < delay <= 15
    task = asyncio.create_task(h.loop.run())
    await asyncio.sleep(delay + 31)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert h.scraper.times == pytest.approx([t0 + delay, t0 + delay + 15, t0 + delay + 30])
    first_ms = (EPOCH_NS + round((t0 + delay) * 1e9)) // 1_000_000
    assert [c[0][2] for c in h.appender.commits] == [first_ms, first_ms + 15_000, first_ms + 30_000]


@pytest.mark.looptime
async def test_slow_scrape_skips_missed_ticks() -> None:
    """A scrape overrunning 2.5 intervals fires once at its end, then back on the grid."""
    h = harness(b"a 1\n", wall=FakeWall(follow_loop=True))
    slow = True
    original = h.scraper.scrape

    async def scrape():  # type: ignore[no-untyped-def]
        nonlocal slow
        response = await original()
        if slow:
            slow = False
            await asyncio.sleep(37.5)
        return response

    h.loop.scraper.scrape = scrape  # type: ignore[method-assign]
    task = asyncio.create_task(h.loop.run())
    await asyncio.sleep(100)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    start = h.scraper.times[0]
    assert [t - start for t in h.scraper.times[:4]] == pytest.approx([0, 37.5, 45, 60])


@pytest.mark.looptime
async def test_end_of_run_staleness_timing() -> None:
    """After a stop: markers for every series and up, stamped one interval after the last
    scrape, written 2 ticks + I/10 later (EMPIRICAL ≈2.2·I)."""
    h = harness(b"a 1\nb 1 1600000000000\n", wall=FakeWall(follow_loop=True))
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(h.loop.run())
    await asyncio.sleep(16)  # first scrape within (0, 15]
    (first,) = h.scraper.times
    await asyncio.sleep(first + 15 + 1 - loop.time())  # the second scrape happened
    last = h.scraper.times[-1]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await h.loop.end_of_run()
    assert loop.time() == pytest.approx(last + 2 * 15 + 1.5)
    markers = h.appender.stale()
    assert names(markers) == sorted(["a", *REPORT])  # b has an explicit timestamp
    stale_ms = (EPOCH_NS + round((last + 15) * 1e9)) // 1_000_000
    assert {m[2] for m in markers} == {stale_ms}
    assert all(float_bits(m[1]) == STALE_NAN_BITS for m in markers)


@pytest.mark.looptime
async def test_end_of_run_without_scrape_writes_nothing() -> None:
    """A loop stopped before its first scrape writes no markers."""
    h = harness(b"a 1\n", wall=FakeWall(follow_loop=True))
    task = asyncio.create_task(h.loop.run())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await h.loop.end_of_run()
    assert h.appender.commits == []
