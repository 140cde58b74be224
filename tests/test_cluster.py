"""Sharding across replicas: flags, peer sources, membership, the agent's wiring and API.

The scrape pool's side (shares, hand-off) is in ``tests/test_cluster_handoff.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from collector.cluster.kubernetes import KubernetesPeers, pod_member
from collector.cluster.membership import Membership, build_membership
from collector.cluster.peers import PeersFile, StaticPeers, parse_peers
from collector.cluster.settings import ClusterSettings, resolve_settings
from collector.config import AgentOptions
from collector.errors import ConfigError
from collector.model.rendezvous import Ring
from collector.model.targetgroup import TargetGroup
from collector.web.app import make_app

# --------------------------------------------------------------------------- settings


def resolve(env: dict[str, str] | None = None, **flags: Any) -> ClusterSettings | None:
    return resolve_settings(AgentOptions(**flags), env or {})


def test_no_cluster_flags_means_no_sharding() -> None:
    """Without a peer source the agent scrapes everything, as before."""
    assert resolve() is None


def test_static_peers_imply_the_source_and_self_defaults_to_pod_name() -> None:
    """``--cluster.peers`` alone is the static source; ``POD_NAME`` names this member."""
    got = resolve({"POD_NAME": "b"}, cluster_peers=("a", "b", "b"))
    assert got == ClusterSettings(peers_from="static", self_name="b", peers=("a", "b"))


def test_kubernetes_source_reads_namespace_from_the_downward_api() -> None:
    """``POD_NAMESPACE`` and the default selector; R and the overlap pass through."""
    got = resolve(
        {"POD_NAME": "collector-1", "POD_NAMESPACE": "monitoring"},
        cluster_peers_from="kubernetes",
        cluster_replication_factor=2,
        cluster_handoff_overlap=20.0,
        kubeconfig="/k",
    )
    assert got == ClusterSettings(
        peers_from="kubernetes",
        self_name="collector-1",
        namespace="monitoring",
        selector="app.kubernetes.io/name=collector",
        kubeconfig="/k",
        replication=2,
        handoff_overlap=20.0,
    )


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"cluster_peers": ("a",), "cluster_peers_file": "f"}, "exclude each other"),
        ({"cluster_self": "a"}, "--cluster.self needs a peer source"),
        ({"cluster_replication_factor": 2}, "--cluster.replication-factor needs"),
        ({"cluster_leave_delay": 5.0}, "--cluster.leave-delay needs"),
        ({"cluster_peers": ("a",), "cluster_leave_delay": -1.0}, "leave-delay must not be neg"),
        ({"cluster_peers_from": "gossip"}, "expected one of static, file, kubernetes"),
        ({"cluster_peers": ("a",), "cluster_replication_factor": 0}, "at least 1"),
        ({"cluster_peers": ("a",), "cluster_handoff_overlap": -1.0}, "must not be negative"),
        ({"cluster_peers_from": "static"}, "needs --cluster.peers=a,b,c"),
        ({"cluster_peers": ("a", "b"), "cluster_self": "c"}, "'c' is not one of"),
        ({"cluster_peers_from": "file"}, "needs --cluster.peers-file"),
        ({"cluster_peers_from": "kubernetes"}, "POD_NAMESPACE"),
        (
            {
                "cluster_peers_from": "kubernetes",
                "cluster_peers_namespace": "m",
                "cluster_peers_selector": "",
            },
            "needs --cluster.peers-selector",
        ),
    ],
)
def test_bad_flag_combinations_name_the_flag(flags: dict[str, Any], message: str) -> None:
    """Each contradictory or incomplete combination is refused with the flag's name."""
    with pytest.raises(ConfigError, match=message):
        resolve({"POD_NAME": "a"}, **flags)


def test_cli_flags_reach_the_options() -> None:
    """Every --cluster.* flag lands in its AgentOptions field, durations in seconds."""
    from collector.cli import build_parser
    from collector.cluster.settings import with_cluster_flags

    args = build_parser().parse_args(
        [
            "--cluster.peers=a, b,,c",
            "--cluster.self=b",
            "--cluster.replication-factor=2",
            "--cluster.handoff-overlap=20s",
            "--cluster.leave-delay=1m",
            "--cluster.peers-file-refresh=500ms",
        ]
    )
    options = with_cluster_flags(AgentOptions(), args)
    assert options.cluster_peers == ("a", "b", "c")
    assert (options.cluster_self, options.cluster_replication_factor) == ("b", 2)
    assert (options.cluster_handoff_overlap, options.cluster_leave_delay) == (20.0, 60.0)
    assert options.cluster_peers_file_refresh == 0.5
    assert resolve_settings(options, {}) == ClusterSettings(
        peers_from="static",
        self_name="b",
        peers=("a", "b", "c"),
        peers_file_refresh=0.5,
        replication=2,
        handoff_overlap=20.0,
        leave_delay=60.0,
    )


def test_agent_wires_membership_and_leaves_by_failing_readiness(tmp_path: Path) -> None:
    """A sharded agent starts owning nothing, reports its cluster, and is not ready while
    leaving; an unsharded one says sharding is off."""
    from collector.agent import Agent

    config = tmp_path / "collector.yml"
    config.write_text("scrape_configs: []\n")
    plain = Agent(AgentOptions(config_file=str(config)), registry=CollectorRegistry())
    assert plain.cluster is None
    assert plain.cluster_status() == {"enabled": False, "members": []}
    agent = Agent(
        AgentOptions(
            config_file=str(config),
            cluster_peers=("a", "b"),
            cluster_self="a",
            cluster_leave_delay=30.0,
        ),
        registry=CollectorRegistry(),
    )
    assert agent.cluster is not None
    assert agent.leave_delay == 30.0
    assert agent.cluster_status()["members"] == []
    agent.cluster.publish(["a", "b"])
    status = agent.cluster_status()
    assert [m["name"] for m in status["members"]] == ["a", "b"]  # type: ignore[attr-defined]
    agent._config_loaded = True
    agent.discovery.synced.set()
    assert agent.is_ready()
    agent.leaving = True
    assert not agent.is_ready()


def test_cli_refuses_bad_cluster_flags(capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI exits 2 with the message before starting anything."""
    from collector.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["--cluster.peers=a,b", "--cluster.self=c"])
    assert exc.value.code == 2
    assert "--cluster.self='c' is not one of --cluster.peers=a,b" in capsys.readouterr().err


# --------------------------------------------------------------------------- peer sources


def test_parse_peers_lines_commas_comments() -> None:
    """New lines or commas separate names; comments and blanks are ignored; duplicates once."""
    assert parse_peers("a\n b , c # the third\n\n# all off\nd,a\n") == ("a", "b", "c", "d")


class Published:
    """Collects what a peer source publishes."""

    def __init__(self) -> None:
        self.lists: list[tuple[str, ...]] = []

    def __call__(self, peers: Sequence[str]) -> None:
        self.lists.append(tuple(peers))


@contextlib.asynccontextmanager
async def running(source: StaticPeers | PeersFile, published: Published) -> AsyncIterator[None]:
    task = asyncio.create_task(source.run(published))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.mark.looptime
async def test_static_peers_publish_once() -> None:
    """The fixed list is reported at start and never again."""
    published = Published()
    async with running(StaticPeers(["a", "b"]), published):
        await asyncio.sleep(100)
    assert published.lists == [("a", "b")]


@pytest.mark.looptime
async def test_peers_file_follows_changes_and_keeps_the_last_good_list(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Changes are seen within the refresh; a missing or empty file keeps the members."""
    path = tmp_path / "peers"
    path.write_text("a\nb\n")
    published = Published()
    async with running(PeersFile(path, refresh=1.0), published):
        await asyncio.sleep(2.5)
        path.write_text("a\nb\n# same members, other text\n")
        await asyncio.sleep(1)
        path.write_text("a\nb\nc\n")
        await asyncio.sleep(1)
        path.unlink()
        await asyncio.sleep(3)
        path.write_text("")
        await asyncio.sleep(3)
        path.write_text("c\n")
        await asyncio.sleep(1)
    assert published.lists == [("a", "b"), ("a", "b"), ("a", "b", "c"), ("c",)]
    errors = [r.getMessage() for r in caplog.records if "peers file" in r.getMessage()]
    assert len(errors) == 2, errors  # once per distinct problem, not once per refresh
    assert "lists no members" in errors[1]


# --------------------------------------------------------------------------- kubernetes


def pod_group(name: str, *, ready: str = "true", phase: str = "Running") -> TargetGroup:
    labels = {
        "__meta_kubernetes_pod_name": name,
        "__meta_kubernetes_pod_ready": ready,
        "__meta_kubernetes_pod_phase": phase,
    }
    return TargetGroup(
        source=f"pod/m/{name}", targets=({"__address__": "10.0.0.1"},), labels=labels
    )


def test_pod_member_only_for_running_ready_pods() -> None:
    """Ready and running: a member; not ready, pending or gone (empty group): not."""
    assert pod_member(pod_group("c-0")) == "c-0"
    assert pod_member(pod_group("c-0", ready="false")) is None
    assert pod_member(pod_group("c-0", ready="unknown")) is None
    assert pod_member(pod_group("c-0", phase="Pending")) is None
    assert pod_member(TargetGroup(source="pod/m/c-0")) is None


def test_kubernetes_peers_watch_one_namespace_with_the_selector() -> None:
    """The discoverer it builds: pod role, the agent's namespace, its label selector."""
    peers = KubernetesPeers(
        namespace="monitoring", selector="app=collector", registry=CollectorRegistry()
    )
    assert peers.config.role == "pod"
    assert peers.config.namespaces == ("monitoring",)
    ((selector),) = peers.config.selectors
    assert (selector.role, selector.label, selector.field) == ("pod", "app=collector", "")


# --------------------------------------------------------------------------- membership


def membership(**settings: Any) -> tuple[Membership, list[Ring], CollectorRegistry]:
    applied: list[Ring] = []
    registry = CollectorRegistry()
    cluster = ClusterSettings(
        **{"peers_from": "static", "self_name": "b", "peers": ("a", "b"), **settings}
    )
    return build_membership(cluster, apply=applied.append, registry=registry), applied, registry


def test_membership_starts_empty_and_applies_only_changes() -> None:
    """Empty (own nothing) until the source reports; the same list again is not re-applied."""
    m, applied, registry = membership(replication=2)
    assert m.ring == Ring((), self_name="b", replication=2)
    assert [m.synced] == [False]  # (a list: mypy would narrow the attribute for good)
    m.publish([])  # a first report, even an empty one, marks it synced
    assert m.synced
    m.publish(["b", "a"])
    m.publish(["a", "b"])
    m.publish(["a"])
    assert applied == [
        Ring((), self_name="b", replication=2),
        Ring(["a", "b"], self_name="b", replication=2),
        Ring(["a"], self_name="b", replication=2),
    ]

    def value(name: str) -> float | None:
        return registry.get_sample_value(name)

    assert value("collector_cluster_members") == 1
    assert value("collector_cluster_self_member") == 0
    assert value("collector_cluster_membership_changes_total") == 3


def test_membership_status_lists_members_and_their_counts() -> None:
    """The /api/v1/cluster data: every member with the self flag and its target count."""
    m, _, _ = membership(handoff_overlap=30.0)
    m.publish(["a", "b"])
    assert m.status(shares={"a": 3, "b": 4}, local=1, handing_off=2) == {
        "enabled": True,
        "peersFrom": "static",
        "self": "b",
        "synced": True,
        "replicationFactor": 1,
        "handoffOverlap": "30s",
        "members": [
            {"name": "a", "self": False, "targets": 3},
            {"name": "b", "self": True, "targets": 4},
        ],
        "localTargets": 1,
        "handingOff": 2,
    }


def test_build_membership_picks_the_source() -> None:
    """static -> StaticPeers, file -> PeersFile, kubernetes -> KubernetesPeers."""
    m, _, _ = membership()
    assert isinstance(m._source, StaticPeers)
    m, _, _ = membership(peers_from="file", peers_file="/p", peers_file_refresh=2.0)
    assert isinstance(m._source, PeersFile)
    assert m._source.refresh == 2.0
    m, _, _ = membership(peers_from="kubernetes", namespace="n", selector="a=b")
    assert isinstance(m._source, KubernetesPeers)


async def test_cluster_endpoint() -> None:
    """GET /api/v1/cluster answers the view's data, or says sharding is off without one."""

    class View:
        def cluster_status(self) -> dict[str, object]:
            return {"enabled": True, "members": [{"name": "a", "self": True, "targets": 2}]}

    for view, data in (
        (View(), View().cluster_status()),
        (None, {"enabled": False}),
    ):
        app = make_app(object(), registry=CollectorRegistry(), cluster=view)  # type: ignore[arg-type]  # only the cluster route is used
        async with TestClient(TestServer(app)) as client:
            response = await client.get("/api/v1/cluster")
            assert response.status == 200
            assert await response.json() == {"status": "success", "data": data}
