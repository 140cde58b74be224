"""The scoreboard of issue 9 comes from one run: ``python -m benchmarks.side_by_side`` prints W1
and W2 with collector's ratios against the peers, then the saturation table of
`benchmarks.saturation` (collector on 1 and N workers, vmagent), unless ``--no-saturation``.

The agents, receivers and targets are fakes here (``run_one``, ``run_step`` and the targets
process): this checks the wiring and what is printed, not the numbers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from benchmarks import saturation, side_by_side

CAPACITY = {
    "collector:1": 150_000.0,
    "collector:2": 175_000.0,
    "collector:4": 200_000.0,
    "vmagent": 250_000.0,
}
"""Samples/s each fake agent delivers at most."""
SERIES = 517
"""Series per target, report series included, as the receiver would count them."""


@pytest.fixture
def steps(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int, float, float]]:
    """Fake saturation steps; the list records (agent, interval, warmup, window) of each."""
    calls: list[tuple[str, int, float, float]] = []

    def run_step(
        agent: str,
        hosts: Sequence[str],
        interval_ms: int,
        *,
        warmup: float,
        window: float,
        work: Path,
    ) -> saturation.Step:
        calls.append((agent, interval_ms, warmup, window))
        offered = len(hosts) * SERIES * 1000.0 / interval_ms
        return saturation.Step(
            agent=agent,
            interval_ms=interval_ms,
            offered=offered,
            delivered=min(offered, CAPACITY[agent]),
            agent_cpus=1.0,
            machine_cpus=2.0,
            peak_rss_mb=100.0,
        )

    @contextlib.contextmanager
    def no_process(argv: Sequence[str], *, log: Path) -> Iterator[None]:
        yield None

    monkeypatch.setattr(saturation, "run_step", run_step)
    monkeypatch.setattr(saturation, "process", no_process)
    monkeypatch.setattr(saturation, "wait_http", lambda url, *, seconds: None)
    return calls


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, float, float]]:
    """Fake side-by-side runs; the list records (agent, workload, seconds, warmup) of each."""
    calls: list[tuple[str, str, float, float]] = []
    cpu = {"collector": 2.5, "prometheus": 4.3, "vmagent": 1.4}  # us per sample
    rss = {"collector": 140.0, "prometheus": 300.0, "vmagent": 70.0}

    def run_one(
        agent: str, *, workload: str, seconds: float, warmup: float, work: Path
    ) -> side_by_side.Result:
        calls.append((agent, workload, seconds, warmup))
        samples = 1_000_000
        return side_by_side.Result(agent, cpu[agent] * samples / 1e6, samples, samples, rss[agent])

    monkeypatch.setattr(side_by_side, "run_one", run_one)
    return calls


def test_one_run_prints_both_workloads_then_the_saturation_table(
    runs: list[tuple[str, str, float, float]],
    steps: list[tuple[str, int, float, float]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert side_by_side.main(["--seconds", "10", "--warmup", "5", "--saturation-window", "4"]) == 0
    out = capsys.readouterr().out

    assert [(w, a) for a, w, _, _ in runs] == [
        (w, a) for w in ("node", "ksm") for a in ("collector", "prometheus", "vmagent")
    ]
    assert {(s, w) for _, _, s, w in runs} == {(10.0, 5.0)}
    w1, w2 = (
        out.index("workload W1 (node): 200 targets"),
        out.index("workload W2 (ksm): 20 targets"),
    )
    table = out.index("saturation: highest samples/s delivered in full")
    assert w1 < w2 < table
    for section in (out[w1:w2], out[w2:table]):
        assert "collector / prometheus: CPU per sample x0.58, peak RSS x0.47" in section
        assert "collector / vmagent: CPU per sample x1.79, peak RSS x2.00" in section

    # Each agent steps down the default ramp until its first failure, with the ramp's defaults
    # and the window passed through.
    offered = {i: 200 * SERIES * 1000.0 / i for i in saturation.INTERVALS_MS}
    expected = []
    for agent in saturation.AGENTS:
        for interval in saturation.INTERVALS_MS:
            expected.append((agent, interval, saturation.WARMUP, 4.0))
            if offered[interval] > CAPACITY[agent]:
                break
    assert steps == expected
    summary = out[table:]
    assert "collector:1   129250/s at 800ms" in summary
    assert "collector:2   159077/s at 650ms" in summary
    assert "vmagent       206800/s at 500ms" in summary
    assert "collector 2 workers / 1 worker: x1.23" in summary
    assert "collector 1 worker / vmagent: x0.62" in summary
    assert "collector 2 workers / vmagent: x0.77" in summary


def test_saturation_knobs_pass_through_and_no_saturation_skips_it(
    runs: list[tuple[str, str, float, float]],
    steps: list[tuple[str, int, float, float]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    side_by_side.main(
        [
            "--workload",
            "ksm",
            "--agent",
            "collector",
            "--saturation-agents",
            "collector:1, collector:4",
            "--saturation-targets",
            "10",
            "--saturation-warmup",
            "12",
            "--saturation-window",
            "5",
            "--saturation-intervals",
            "1000,500",
        ]
    )
    out = capsys.readouterr().out
    assert "10 node targets" in out
    assert steps == [
        (agent, interval, 12.0, 5.0)
        for agent in ("collector:1", "collector:4")
        for interval in (1000, 500)
    ]
    assert "collector 4 workers / 1 worker: x1.00" in out  # 10 targets: both pass at 500 ms

    steps.clear()
    side_by_side.main(["--workload", "ksm", "--agent", "collector", "--no-saturation"])
    out = capsys.readouterr().out
    assert "workload W2 (ksm)" in out
    assert "saturation" not in out
    assert steps == []


def test_saturation_alone_prints_its_steps_and_table(
    steps: list[tuple[str, int, float, float]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert saturation.main(["--intervals", "1000,800", "--window", "3"]) == 0
    out = capsys.readouterr().out
    assert "200 node targets; pass: delivered >= 98% of offered" in out
    assert out.count(" pass\n") == 6
    assert "collector 2 workers / 1 worker: x1.00" in out
    assert "collector 2 workers / vmagent: x1.00" in out
    assert [s[3] for s in steps] == [3.0] * 6
