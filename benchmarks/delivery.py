"""Issue 8's "Nothing lost" table for collector, the Prometheus agent and vmagent, side by side.

Each agent runs every scenario of the issue at its full length (``--scale 1.0``: 60 s outages,
30 s phases of 500 and 429, 60 s of +2 s per request, 20 kills) against the same rig the test
uses (``tests/integration/delivery.py``): 20 loopback targets x 200 gauges at 1 s, a
fault-injecting proxy that decodes and books every sample (``tests/integration/faultproxy.py``),
and a real VictoriaMetrics behind it. Each agent gets a fresh rig per scenario. The agents:

- collector: ``python -m collector --storage.remote.flush-deadline=10s``;
- Prometheus 2.x in agent mode: ``prometheus --enable-feature=agent --storage.agent.path=...
  --storage.remote.flush-deadline=10s``;
- vmagent: ``vmagent -promscrape.config=... -remoteWrite.url=... -remoteWrite.tmpDataPath=...``.

Each uses its defaults for queues, retries and back-off. (So the Prometheus agent does not retry
429 unless ``retry_on_http_429`` is set, and it drops what is in memory at shutdown.)

Columns: served scrapes; lost scrapes and samples (served, never fully acknowledged, and not
excused); missed scrapes (a target not scraped for an interval while the agent ran); excused
(in flight at a SIGTERM, or within 1 s of a SIGKILL, at most one per target); out-of-order and
duplicate arrivals at the receiver; samples refused with 400; exit code and seconds after SIGTERM;
and whether the goal in the issue's table is met.

Run: ``python -m benchmarks.delivery [--agents collector,prometheus,vmagent] [--scale 1.0]
[--scenarios down,sigterm,sigkill,statuses,delay,kills] [--workdir DIR] [--json]`` from the
repository root (it imports ``tests.integration``). Needs the Debian packages ``prometheus`` and
``victoria-metrics`` (which has ``vmagent``). A full run takes about 10 minutes per agent.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.integration.delivery import AGENTS, SCENARIOS, AgentKind, Outcome, Phases, Rig, problems


@dataclass(frozen=True, slots=True)
class Row:
    """One agent's result in one scenario (``outcome`` None: the run itself failed)."""

    scenario: str
    agent: AgentKind
    outcome: Outcome | None
    error: str = ""

    def cells(self) -> list[str]:
        """The table's cells after the scenario and agent names."""
        o = self.outcome
        if o is None:
            return ["-"] * 8 + [f"error: {self.error}"]
        a = o.account
        exit_cell = "-"
        if o.exits:
            e = o.exits[0]
            exit_cell = f"{e.code if e.code is not None else 'killed'} in {e.seconds:.1f}s"
        refused = o.refused.get(400, (0, 0))[1]
        found = problems(o)
        return [
            str(a.served),
            f"{a.lost_scrapes}/{a.lost_samples}",
            str(a.missed_scrapes),
            str(a.excused_scrapes),
            str(o.out_of_order),
            str(o.duplicates),
            str(refused) if refused else "-",
            exit_cell,
            "yes" if not found else "NO: " + "; ".join(found),
        ]

    def as_json(self) -> dict[str, object]:
        """A flat record for ``--json``."""
        o = self.outcome
        if o is None:
            return {"scenario": self.scenario, "agent": self.agent, "error": self.error}
        a = o.account
        return {
            "scenario": self.scenario,
            "agent": self.agent,
            "served": a.served,
            "lost_scrapes": a.lost_scrapes,
            "lost_samples": a.lost_samples,
            "missed_scrapes": a.missed_scrapes,
            "excused_scrapes": a.excused_scrapes,
            "excused_samples": a.excused_samples,
            "out_of_order": o.out_of_order,
            "duplicates": o.duplicates,
            "refused": {str(k): v for k, v in o.refused.items()},
            "refused_400_lost": len(o.refused_lost),
            "exits": [{"code": e.code, "seconds": round(e.seconds, 3)} for e in o.exits],
            "kills": o.kills,
            "seed": o.seed,
            "problems": problems(o),
        }


_HEADER = [
    "scenario",
    "agent",
    "served",
    "lost scr/smp",
    "missed",
    "excused",
    "ooo",
    "dup",
    "400'd",
    "SIGTERM exit",
    "goal met",
]


def print_table(rows: Sequence[Row]) -> None:
    """The table, one line per scenario and agent, with the goals underneath."""
    table = [_HEADER, *([r.scenario, r.agent, *r.cells()] for r in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(_HEADER) - 1)]
    for line in table:
        cells = [c.ljust(w) for c, w in zip(line[:-1], widths, strict=True)]
        print("  ".join([*cells, line[-1]]))
    print()
    for name in dict.fromkeys(r.scenario for r in rows):
        print(f"{name:<10} goal: {SCENARIOS[name][0]}")


@contextlib.contextmanager
def _workdir(path: str | None) -> Iterator[Path]:
    if path:
        Path(path).mkdir(parents=True, exist_ok=True)
        yield Path(path)
        return
    with tempfile.TemporaryDirectory(prefix="delivery-") as tmp:
        yield Path(tmp)


def run(
    agents: Sequence[AgentKind],
    scenarios: Sequence[str],
    *,
    phases: Phases,
    workdir: Path,
    seed: int,
    as_json: bool,
) -> list[Row]:
    """Every scenario for every agent, each on a fresh rig; prints each report as it ends."""
    rng = random.Random(seed)
    rows = []
    for agent in agents:
        for name in scenarios:
            work = workdir / agent / name
            work.mkdir(parents=True, exist_ok=True)
            began = time.monotonic()
            print(f"-- {agent} / {name} ...", flush=True)
            try:
                with Rig(agent, work, phases=phases) as rig:
                    row = Row(name, agent, SCENARIOS[name][1](rig, rng))
            except Exception as exc:  # one failed run is a row, not the end of the table
                row = Row(name, agent, None, f"{type(exc).__name__}: {exc}"[:300])
            rows.append(row)
            if row.outcome is not None:
                print(row.outcome.report(), flush=True)
            else:
                print(f"{agent} / {name}: {row.error} ({time.monotonic() - began:.0f} s)")
            if as_json:
                print(json.dumps(row.as_json()), flush=True)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Run the requested agents and scenarios; print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", default=",".join(AGENTS), help="comma-separated")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated")
    parser.add_argument("--scale", type=float, default=1.0, help="of the issue's durations")
    parser.add_argument("--seed", type=int, default=None, help="for the kill moments")
    parser.add_argument("--workdir", default=None, help="keep logs and data here")
    parser.add_argument("--json", action="store_true", help="also print JSON lines")
    args = parser.parse_args(argv)
    agents: list[AgentKind] = []
    for name in args.agents.split(","):
        if name not in AGENTS:
            parser.error(f"unknown agent {name!r}; choose from {', '.join(AGENTS)}")
        agents.append(AGENTS[AGENTS.index(name)])
    scenarios = args.scenarios.split(",")
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenarios {unknown}; choose from {', '.join(SCENARIOS)}")
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    phases = Phases.at_scale(args.scale)
    print(f"scale {args.scale} (outage {phases.outage:.0f} s), seed {seed}", flush=True)
    with _workdir(args.workdir) as workdir:
        rows = run(agents, scenarios, phases=phases, workdir=workdir, seed=seed, as_json=args.json)
        print()
        print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
