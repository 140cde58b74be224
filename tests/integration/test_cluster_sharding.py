"""Sharding end to end: real agent processes share 300 loopback targets, 3 -> 4 -> 3 members.

Each member is a ``python -m collector`` process with ``--cluster.peers-file`` (one shared file,
re-read every 200 ms) and ``--cluster.self``; a fourth process runs from the start but is not
in the file until the join, like a pod that is not ready yet. The targets are static; the rig
(targets that count their scrapes, the receiver, the verdict) is ``cluster_rig.py``, shared
with ``test_cluster_pods.py``, where the targets are pods on a real API server.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from tests.integration.cluster_rig import (
    MEMBERS,
    Fleet,
    assert_handoffs,
    run_phases,
    serve_fleet,
    serve_receiver,
    start_members,
    write_peers,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

INTERVAL = 2.0
N_TARGETS = 300


def member_config(member: str, fleet: Fleet, receiver: str) -> str:
    targets = ", ".join(f'"{a}"' for a in fleet.addresses)
    return f"""
global:
  scrape_interval: {INTERVAL:g}s
  scrape_timeout: 1s
remote_write:
  - url: {receiver}
    queue_config: {{batch_send_deadline: 500ms}}
scrape_configs:
  - job_name: fleet
    authorization: {{credentials: {member}}}
    static_configs:
      - targets: [{targets}]
"""


async def test_three_members_share_300_targets_and_hand_off_on_join_and_leave(
    tmp_path: Path,
) -> None:
    """3 members own each target once; a 4th joins and leaves; about 1/N moves each time, no
    target goes unscraped for more than an interval, and no series gets a staleness marker."""
    peers = tmp_path / "peers"
    write_peers(peers, MEMBERS[:3])
    async with (
        serve_fleet(N_TARGETS) as fleet,
        serve_receiver() as (receiver_url, received),
        aiohttp.ClientSession() as session,
    ):
        configs = {name: member_config(name, fleet, receiver_url) for name in MEMBERS}
        flags = [f"--cluster.peers-file={peers}", "--cluster.peers-file-refresh=200ms"]
        with start_members(
            tmp_path, configs=configs, flags=lambda name: [*flags, f"--cluster.self={name}"]
        ) as members:
            phases = await run_phases(
                session,
                fleet,
                members,
                interval=INTERVAL,
                join=lambda: write_peers(peers, MEMBERS),
                leave=lambda: write_peers(peers, MEMBERS[:3]),
            )
        # The members have flushed their queues and exited.
        for m in members.values():
            assert m.process.returncode == 0, m.log.read_text()[-3000:]

    assert_handoffs(fleet, received, phases, interval=INTERVAL)
