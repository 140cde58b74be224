"""When ``--scrape.workers=auto`` adds a process (`collector.workers.growth`), on a fake clock."""

from __future__ import annotations

from collector.workers.growth import SAMPLE_INTERVAL, SETTLE, WINDOW, CpuMeter, Growth


def feed(growth: Growth, start: float, seconds: float, cores: float, count: int) -> float | None:
    """Observe every `SAMPLE_INTERVAL` from ``start``; the time of the first True, if any."""
    t = start
    while t <= start + seconds:
        if growth.observe(t, cores, count):
            return t
        t += SAMPLE_INTERVAL
    return None


def test_one_saturated_process_gets_a_second_after_the_settle_time_and_a_full_window() -> None:
    growth = Growth(most=2)
    at = feed(growth, 0.0, 600, cores=0.95, count=1)
    assert at == max(SETTLE, WINDOW)


def test_below_the_threshold_or_one_dip_in_the_window_adds_nothing() -> None:
    assert feed(Growth(most=4), 0.0, 600, cores=0.7, count=1) is None
    growth = Growth(most=4)
    assert feed(growth, 0.0, SETTLE + 10, cores=0.95, count=1) is not None  # saturated
    growth = Growth(most=4)
    feed(growth, 0.0, SETTLE - 10, cores=0.95, count=1)
    growth.observe(SETTLE - 5, 0.2, 1)  # a dip: the window must pass again without one
    assert feed(growth, SETTLE, WINDOW - 10, cores=0.95, count=1) is None
    assert feed(growth, SETTLE + WINDOW - 5, 30, cores=0.95, count=1) is not None


def test_never_more_than_the_usable_cpus_and_the_average_counts() -> None:
    growth = Growth(most=2)
    assert feed(growth, 0.0, 600, cores=2.0, count=2) is None  # at the most already
    growth = Growth(most=3)
    assert feed(growth, 0.0, 600, cores=1.2, count=2) is None  # 0.6 each: not saturated
    growth = Growth(most=3)
    first = feed(growth, 0.0, 600, cores=1.8, count=2)
    assert first is not None
    growth.grew(first)
    # After adding one: settle again and a whole new window before the next.
    again = feed(growth, first + SAMPLE_INTERVAL, 600, cores=2.7, count=3)
    assert again is None  # three is the most


def test_cpu_meter_counts_each_process_from_its_second_sample() -> None:
    cpu = {1: 10.0, 2: 5.0}
    meter = CpuMeter(read=cpu.get)
    assert meter.sample(100.0, [1, 2]) is None
    cpu[1], cpu[2] = 14.0, 9.0
    assert meter.sample(110.0, [1, 2]) == 0.8  # (4 + 4) s of CPU over 10 s
    cpu[1], cpu[3] = 19.0, 50.0  # 2 is gone, 3 is new: counts from the next sample
    assert meter.sample(120.0, [1, 2, 3]) == 0.5
    cpu[3] = 55.0
    assert meter.sample(125.0, [1, 3]) == 1.0
