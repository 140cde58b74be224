"""Sharding pods with Kubernetes as the coordinator, on a real kube-apiserver v1.20.2 (issue 11).

The Done-when test as written: 300 pods created on the API server (``tests/integration/kube.py``)
in namespace ``fleet``, each with one ``containerPort`` and a status patched to Running and
Ready whose ``podIP`` is a loopback address where ``cluster_rig`` serves a target that counts
its scrapes. Four ``python -m collector`` processes discover them with ``kubernetes_sd_configs:
role: pod`` and take their membership from the same API server (``--cluster.peers-from=
kubernetes``): their own pods ``m0``..``m3`` in namespace ``agents``, labelled for
``--cluster.peers-selector``. ``m0``..``m2`` are ready from the start; ``m3``'s agent runs from
the start, but its pod becomes Ready only at the join (its readiness probe passing) and not
ready again at the leave (what ``--cluster.leave-delay`` does at SIGTERM). The verdict is the
peers-file test's (``test_cluster_sharding.py``): R = 1, at most 35 % moved per change, nothing
unscraped for more than an interval, no double scraping longer than the overlap.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.integration.cluster_rig import (
    MEMBERS,
    assert_handoffs,
    run_phases,
    serve_fleet,
    serve_receiver,
    start_members,
)
from tests.integration.kube import KubeAPIServer, kube_apiserver

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

INTERVAL = 2.0
N_TARGETS = 300
FLEET_NS = "fleet"
AGENTS_NS = "agents"
AGENT_LABELS = {"app.kubernetes.io/name": "collector", "app.kubernetes.io/instance": "pods-e2e"}
SELECTOR = ",".join(f"{k}={v}" for k, v in AGENT_LABELS.items())


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeAPIServer]:
    with kube_apiserver(tmp_path_factory.mktemp("kube")) as server:
        yield server


def pod(name: str, *, port: int, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "example.invalid/app:1",
                    "ports": [{"name": "metrics", "containerPort": port, "protocol": "TCP"}],
                }
            ]
        },
    }


def status(ip: str, *, ready: bool = True) -> dict[str, Any]:
    return {
        "phase": "Running",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
    }


def start_pod(
    kube: KubeAPIServer, ns: str, name: str, address: str, *, labels: dict[str, str], ready: bool
) -> None:
    """Create the pod, then set its status (the server resets status on create; no kubelet)."""
    ip, _, port = address.rpartition(":")
    kube.create(f"/api/v1/namespaces/{ns}/pods", pod(name, port=int(port), labels=labels))
    kube.patch_status(f"/api/v1/namespaces/{ns}/pods/{name}", status(ip, ready=ready))


def member_config(member: str, receiver: str) -> str:
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
    kubernetes_sd_configs:
      - role: pod
        namespaces: {{names: [{FLEET_NS}]}}
"""


async def test_three_agents_shard_300_pods_and_hand_off_as_their_own_pods_come_and_go(
    kube: KubeAPIServer, tmp_path: Path
) -> None:
    """Targets and members both from the API server: each pod target has one owner, a member
    whose pod turns Ready takes about a quarter, and gives exactly those back when it turns not
    ready, with no target unscraped or scraped twice for more than an interval."""
    for ns in (FLEET_NS, AGENTS_NS):
        kube.ensure_namespace(ns)
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
    async with (
        serve_fleet(N_TARGETS, prefix="127.4") as fleet,
        serve_receiver() as (receiver_url, received),
        aiohttp.ClientSession() as session,
    ):
        # 600 blocking requests (create, then status), a few at a time off the event loop.
        await asyncio.gather(
            *(
                asyncio.to_thread(
                    start_pod,
                    kube,
                    FLEET_NS,
                    f"target-{i}",
                    address,
                    labels={"app": "t"},
                    ready=True,
                )
                for i, address in enumerate(fleet.addresses)
            )
        )
        for i, name in enumerate(MEMBERS):
            # The agents' pod IPs are never dialled (membership reads names and readiness).
            start_pod(
                kube, AGENTS_NS, name, f"10.9.0.{i + 1}:9099", labels=AGENT_LABELS, ready=i < 3
            )
        listed = kube.get(f"/api/v1/namespaces/{FLEET_NS}/pods")["items"]
        assert len(listed) == N_TARGETS
        assert {p["status"]["podIP"] for p in listed} == {
            a.rpartition(":")[0] for a in fleet.addresses
        }

        joiner = f"/api/v1/namespaces/{AGENTS_NS}/pods/{MEMBERS[-1]}"
        flags = [
            f"--kubeconfig={kubeconfig}",
            "--cluster.peers-from=kubernetes",
            f"--cluster.peers-namespace={AGENTS_NS}",
            f"--cluster.peers-selector={SELECTOR}",
        ]
        configs = {name: member_config(name, receiver_url) for name in MEMBERS}
        with start_members(
            tmp_path, configs=configs, flags=lambda name: [*flags, f"--cluster.self={name}"]
        ) as members:
            phases = await run_phases(
                session,
                fleet,
                members,
                interval=INTERVAL,
                join=lambda: asyncio.to_thread(kube.patch_status, joiner, status("10.9.0.4")),
                leave=lambda: asyncio.to_thread(
                    kube.patch_status, joiner, status("10.9.0.4", ready=False)
                ),
            )
        for m in members.values():
            assert m.process.returncode == 0, m.log.read_text()[-3000:]

    assert_handoffs(fleet, received, phases, interval=INTERVAL)
