"""Kubernetes SD against a real kube-apiserver v1.20.2 (tests/integration/kube.py).

Each role (node, pod, service, endpoints, ingress) discovers objects created through the API
with exactly the labels Prometheus gives them (prometheus-spec.md §2), follows changes while
watching, relists after etcd compaction (watch 410) and survives the failures of the Done
criteria: a 403 for missing RBAC rights, wrong credentials fixed on disk, an API server restart
and a network outage during which objects were deleted. The last test runs the whole agent
with ``kubeconfig_file`` and reads its ``/api/v1/targets``.

One server serves the module; every test uses its own namespace and node names.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from collector.config import (
    AttachMetadata,
    Authorization,
    HTTPClientConfig,
    KubernetesSDConfig,
    KubernetesSelector,
    TLSConfig,
)
from collector.discovery.kubernetes import InformerOptions, InformerPool, make_discoverer
from collector.kubernetes.connection import ConnectionSpec
from collector.model.targetgroup import TargetGroup
from tests.integration.kube import KubeAPIServer, kube_apiserver
from tests.integration.running import eventually, running_agent

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

M = "__meta_kubernetes_"
IMAGE = "example.invalid/app:1"

# Short backoff so recoveries are quick; everything else is client-go's default.
FAST = InformerOptions(backoff_initial=0.1, backoff_max=0.5)


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeAPIServer]:
    with kube_apiserver(tmp_path_factory.mktemp("kube")) as server:
        yield server


# ----------------------------------------------------------------------------- objects


def node(name: str, ip: str, *, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": labels if labels is not None else {"zone": "a", "empty": ""},
            "annotations": {"note": "n"},
        },
        "spec": {"providerID": f"fake://{name}"},
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": ip},
                {"type": "Hostname", "address": name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def pod(
    name: str,
    *,
    node_name: str = "",
    labels: dict[str, str] | None = None,
    ports: Sequence[tuple[str, int]] = (("http", 8080), ("metrics", 9100)),
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [
            {
                "name": "app",
                "image": IMAGE,
                "ports": [{"name": n, "containerPort": p, "protocol": "TCP"} for n, p in ports],
            }
        ]
    }
    if node_name:
        spec["nodeName"] = node_name
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": labels if labels is not None else {"app": name},
            "annotations": {"prometheus.io/scrape": "true"},
        },
        "spec": spec,
    }


def running(ip: str, host_ip: str = "10.0.0.1", *, container_id: str = "") -> dict[str, Any]:
    status: dict[str, Any] = {
        "phase": "Running",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "hostIP": host_ip,
        "conditions": [{"type": "Ready", "status": "True"}],
    }
    if container_id:
        status["containerStatuses"] = [
            {
                "name": "app",
                "ready": True,
                "restartCount": 0,
                "image": IMAGE,
                "imageID": "",
                "containerID": container_id,
                "state": {"running": {"startedAt": "2024-01-01T00:00:00Z"}},
            }
        ]
    return status


def service(name: str, *, selector: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": {"app": name}, "annotations": {"team": "obs"}},
        "spec": {
            "selector": selector or {"app": name},
            "ports": [
                {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
                {"name": "metrics", "port": 9100, "protocol": "TCP"},
            ],
        },
    }


# ----------------------------------------------------------------------------- running SD


class Sink:
    """Every send, and the latest group per source."""

    def __init__(self) -> None:
        self.sends: list[list[TargetGroup]] = []
        self.groups: dict[str, TargetGroup] = {}

    def __call__(self, groups: Sequence[TargetGroup]) -> None:
        self.sends.append(list(groups))
        for g in groups:
            self.groups[g.source] = g

    def group(self, source: str) -> tuple[dict[str, str], list[dict[str, str]]]:
        """(group labels, targets) of ``source``; KeyError when never sent."""
        g = self.groups[source]
        return dict(g.labels), [dict(t) for t in g.targets]

    def addresses(self, prefix: str = "") -> set[str]:
        return {
            t["__address__"]
            for source, g in self.groups.items()
            if source.startswith(prefix)
            for t in g.targets
        }


def kubeconfig_spec(kube: KubeAPIServer, path: Path, token: str | None = None) -> ConnectionSpec:
    return ConnectionSpec(kubeconfig=str(kube.write_kubeconfig(path, token)))


def api_server_spec(url: str, kube: KubeAPIServer, token_file: Path) -> ConnectionSpec:
    """``api_server`` with ``authorization.credentials_file`` and the rig's CA."""
    return ConnectionSpec(
        api_server=url,
        http_client=HTTPClientConfig(
            authorization=Authorization(credentials_file=str(token_file)),
            tls_config=TLSConfig(ca_file=str(kube.ca_file)),
        ),
    )


@contextlib.asynccontextmanager
async def discovering(
    config: KubernetesSDConfig,
    spec: ConnectionSpec,
    *,
    registry: CollectorRegistry | None = None,
) -> AsyncIterator[Sink]:
    """Run one discoverer (on a private pool) until the block ends."""
    sink = Sink()
    pool = InformerPool(options=FAST)
    d = make_discoverer(
        config, registry=registry or CollectorRegistry(), pool=pool, connection=spec
    )
    task = asyncio.create_task(d.run(sink))
    try:
        yield sink
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert len(pool) == 0


def in_ns(role: str, ns: str, **kw: Any) -> KubernetesSDConfig:
    return KubernetesSDConfig(role=role, namespaces=(ns,), **kw)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- roles


async def test_node_role_labels_and_changes(kube: KubeAPIServer, tmp_path: Path) -> None:
    """Role node: exact labels; a label change and a deletion while watching."""
    kube.create("/api/v1/nodes", node("disc-node-1", "10.0.0.1"))
    config = KubernetesSDConfig(
        role="node", selectors=(KubernetesSelector(role="node", label="zone"),)
    )
    async with discovering(config, kubeconfig_spec(kube, tmp_path / "kc")) as sink:
        await eventually(lambda: "node/disc-node-1" in sink.groups)
        labels, targets = sink.group("node/disc-node-1")
        assert labels == {
            M + "node_name": "disc-node-1",
            M + "node_label_zone": "a",
            M + "node_labelpresent_zone": "true",
            M + "node_labelpresent_empty": "true",
            M + "node_annotation_note": "n",
            M + "node_annotationpresent_note": "true",
            M + "node_provider_id": "fake://disc-node-1",
            M + "node_condition_ready": "true",
        }
        assert targets == [
            {
                "__address__": "10.0.0.1:10250",
                "instance": "disc-node-1",
                M + "node_address_InternalIP": "10.0.0.1",
                M + "node_address_Hostname": "disc-node-1",
            }
        ]

        kube.patch("/api/v1/nodes/disc-node-1", {"metadata": {"labels": {"zone": "b"}}})
        await eventually(
            lambda: sink.group("node/disc-node-1")[0].get(M + "node_label_zone") == "b"
        )
        # Out of the selector: the node's group is emptied.
        kube.create("/api/v1/nodes", node("disc-node-2", "10.0.0.2", labels={}))
        kube.delete("/api/v1/nodes/disc-node-1")
        await eventually(lambda: sink.groups["node/disc-node-1"].targets == ())
        assert "node/disc-node-2" not in sink.groups  # no zone label: not selected


async def test_pod_role_labels_and_changes(kube: KubeAPIServer, tmp_path: Path) -> None:
    """Role pod: no IP -> no targets; IP set via status -> exact labels; relabel; delete."""
    ns = "disc-pod"
    kube.ensure_namespace(ns)
    pods = f"/api/v1/namespaces/{ns}/pods"
    owner = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "name": "web-5d4f",
        "uid": "7c9e6679-7425-40de-944b-e07fc1f90ae7",
        "controller": True,
    }
    body = pod("web", node_name="disc-pod-node")
    body["metadata"]["ownerReferences"] = [owner]
    body["metadata"]["labels"]["empty"] = ""
    created = kube.create(pods, body)
    uid = created["metadata"]["uid"]
    async with discovering(in_ns("pod", ns), kubeconfig_spec(kube, tmp_path / "kc")) as sink:
        await eventually(lambda: bool(sink.sends))
        source = f"pod/{ns}/web"
        # Pending without podIP: no group with targets.
        assert sink.groups.get(source, TargetGroup(source=source)).targets == ()

        kube.patch_status(f"{pods}/web", running("10.1.0.5", container_id="containerd://0123abcd"))
        await eventually(lambda: source in sink.groups and sink.groups[source].targets != ())
        labels, targets = sink.group(source)
        assert labels == {
            M + "namespace": ns,
            M + "pod_name": "web",
            M + "pod_label_app": "web",
            M + "pod_labelpresent_app": "true",
            M + "pod_labelpresent_empty": "true",
            M + "pod_annotation_prometheus_io_scrape": "true",
            M + "pod_annotationpresent_prometheus_io_scrape": "true",
            M + "pod_ip": "10.1.0.5",
            M + "pod_ready": "true",
            M + "pod_phase": "Running",
            M + "pod_node_name": "disc-pod-node",
            M + "pod_host_ip": "10.0.0.1",
            M + "pod_uid": uid,
            M + "pod_controller_kind": "ReplicaSet",
            M + "pod_controller_name": "web-5d4f",
        }
        container = {
            M + "pod_container_name": "app",
            M + "pod_container_image": IMAGE,
            M + "pod_container_id": "containerd://0123abcd",
            M + "pod_container_init": "false",
            M + "pod_container_port_protocol": "TCP",
        }
        assert targets == [
            {
                "__address__": "10.1.0.5:8080",
                **container,
                M + "pod_container_port_name": "http",
                M + "pod_container_port_number": "8080",
            },
            {
                "__address__": "10.1.0.5:9100",
                **container,
                M + "pod_container_port_name": "metrics",
                M + "pod_container_port_number": "9100",
            },
        ]

        kube.patch(f"{pods}/web", {"metadata": {"labels": {"app": "web2"}}})
        await eventually(lambda: sink.group(source)[0][M + "pod_label_app"] == "web2")
        kube.patch_status(f"{pods}/web", {"conditions": [{"type": "Ready", "status": "False"}]})
        await eventually(lambda: sink.group(source)[0][M + "pod_ready"] == "false")

        kube.delete(f"{pods}/web")
        await eventually(lambda: sink.groups[source] == TargetGroup(source=source))


async def test_pod_role_field_selector_and_attach_node(kube: KubeAPIServer, tmp_path: Path) -> None:
    """A node-local pod SD (field selector) with attach_metadata.node: node labels appear,
    and a node label change re-triggers the pods on it."""
    ns = "disc-attach"
    kube.ensure_namespace(ns)
    kube.create("/api/v1/nodes", node("disc-attach-n1", "10.0.3.1"))
    pods = f"/api/v1/namespaces/{ns}/pods"
    for name, node_name, ip in (("a", "disc-attach-n1", "10.1.3.1"), ("b", "other", "10.1.3.2")):
        kube.create(pods, pod(name, node_name=node_name, ports=()))
        kube.patch_status(f"{pods}/{name}", running(ip))
    config = in_ns(
        "pod",
        ns,
        selectors=(KubernetesSelector(role="pod", field="spec.nodeName=disc-attach-n1"),),
        attach_metadata=AttachMetadata(node=True),
    )
    async with discovering(config, kubeconfig_spec(kube, tmp_path / "kc")) as sink:
        await eventually(lambda: f"pod/{ns}/a" in sink.groups)
        assert f"pod/{ns}/b" not in sink.groups
        labels, targets = sink.group(f"pod/{ns}/a")
        assert {k: v for k, v in labels.items() if k.startswith(M + "node_")} == {
            M + "node_name": "disc-attach-n1",
            M + "node_label_zone": "a",
            M + "node_labelpresent_zone": "true",
            M + "node_labelpresent_empty": "true",
            M + "node_annotation_note": "n",
            M + "node_annotationpresent_note": "true",
        }
        # A container without ports: one target on the bare IP, no port labels.
        assert targets == [
            {
                "__address__": "10.1.3.1",
                M + "pod_container_name": "app",
                M + "pod_container_image": IMAGE,
                M + "pod_container_init": "false",
            }
        ]
        kube.patch("/api/v1/nodes/disc-attach-n1", {"metadata": {"labels": {"zone": "z"}}})
        await eventually(lambda: sink.group(f"pod/{ns}/a")[0][M + "node_label_zone"] == "z")


async def test_service_role_labels(kube: KubeAPIServer, tmp_path: Path) -> None:
    """Role service: one target per port at <name>.<ns>.svc:<port>; a deletion empties it."""
    ns = "disc-svc"
    kube.ensure_namespace(ns)
    created = kube.create(f"/api/v1/namespaces/{ns}/services", service("web"))
    cluster_ip = created["spec"]["clusterIP"]
    external = kube.create(
        f"/api/v1/namespaces/{ns}/services",
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "ext"},
            "spec": {
                "type": "ExternalName",
                "externalName": "db.example.com",
                "ports": [{"port": 5432}],
            },
        },
    )
    assert external["spec"]["type"] == "ExternalName"
    async with discovering(in_ns("service", ns), kubeconfig_spec(kube, tmp_path / "kc")) as sink:
        await eventually(lambda: len(sink.groups) == 2)
        labels, targets = sink.group(f"svc/{ns}/web")
        assert labels == {
            M + "namespace": ns,
            M + "service_name": "web",
            M + "service_label_app": "web",
            M + "service_labelpresent_app": "true",
            M + "service_annotation_team": "obs",
            M + "service_annotationpresent_team": "true",
        }
        common = {
            M + "service_port_protocol": "TCP",
            M + "service_type": "ClusterIP",
            M + "service_cluster_ip": cluster_ip,
        }
        assert targets == [
            {
                "__address__": f"web.{ns}.svc:80",
                M + "service_port_name": "http",
                M + "service_port_number": "80",
                **common,
            },
            {
                "__address__": f"web.{ns}.svc:9100",
                M + "service_port_name": "metrics",
                M + "service_port_number": "9100",
                **common,
            },
        ]
        assert sink.group(f"svc/{ns}/ext") == (
            {M + "namespace": ns, M + "service_name": "ext"},
            [
                {
                    "__address__": f"ext.{ns}.svc:5432",
                    M + "service_port_number": "5432",
                    M + "service_port_protocol": "TCP",
                    M + "service_type": "ExternalName",
                    M + "service_external_name": "db.example.com",
                }
            ],
        )
        kube.delete(f"/api/v1/namespaces/{ns}/services/ext")
        await eventually(lambda: sink.groups[f"svc/{ns}/ext"].targets == ())


async def test_endpoints_role_joins_pods_and_services(kube: KubeAPIServer, tmp_path: Path) -> None:
    """Role endpoints: endpoint, service and pod labels; extra container ports; a pod phase
    change re-triggers; deleting the Service deletes its Endpoints (server side)."""
    ns = "disc-eps"
    kube.ensure_namespace(ns)
    kube.create("/api/v1/nodes", node("disc-eps-n1", "10.0.4.1"))
    pods = f"/api/v1/namespaces/{ns}/pods"
    created = kube.create(pods, pod("web-1", node_name="disc-eps-n1", labels={"app": "web"}))
    kube.patch_status(f"{pods}/web-1", running("10.1.4.1", "10.0.4.1"))
    kube.create(f"/api/v1/namespaces/{ns}/services", service("web"))
    kube.create(
        f"/api/v1/namespaces/{ns}/endpoints",
        {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": "web", "labels": {"svc": "web"}},
            "subsets": [
                {
                    "addresses": [
                        {
                            "ip": "10.1.4.1",
                            "nodeName": "disc-eps-n1",
                            "targetRef": {"kind": "Pod", "namespace": ns, "name": "web-1"},
                        }
                    ],
                    "notReadyAddresses": [{"ip": "10.1.4.9", "hostname": "spare"}],
                    "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                }
            ],
        },
    )
    config = in_ns("endpoints", ns, attach_metadata=AttachMetadata(node=True))
    async with discovering(config, kubeconfig_spec(kube, tmp_path / "kc")) as sink:
        source = f"endpoints/{ns}/web"
        await eventually(lambda: source in sink.groups)
        labels, targets = sink.group(source)
        assert labels == {
            M + "namespace": ns,
            M + "endpoints_name": "web",
            M + "endpoints_label_svc": "web",
            M + "endpoints_labelpresent_svc": "true",
            M + "service_name": "web",
            M + "service_label_app": "web",
            M + "service_labelpresent_app": "true",
            M + "service_annotation_team": "obs",
            M + "service_annotationpresent_team": "true",
        }
        pod_labels = {
            M + "pod_name": "web-1",
            M + "pod_label_app": "web",
            M + "pod_labelpresent_app": "true",
            M + "pod_annotation_prometheus_io_scrape": "true",
            M + "pod_annotationpresent_prometheus_io_scrape": "true",
            M + "pod_ip": "10.1.4.1",
            M + "pod_ready": "true",
            M + "pod_phase": "Running",
            M + "pod_node_name": "disc-eps-n1",
            M + "pod_host_ip": "10.0.4.1",
            M + "pod_uid": created["metadata"]["uid"],
        }
        node_labels = {
            M + "node_name": "disc-eps-n1",
            M + "node_label_zone": "a",
            M + "node_labelpresent_zone": "true",
            M + "node_labelpresent_empty": "true",
            M + "node_annotation_note": "n",
            M + "node_annotationpresent_note": "true",
        }
        container = {
            M + "pod_container_name": "app",
            M + "pod_container_image": IMAGE,
            M + "pod_container_init": "false",
            M + "pod_container_port_protocol": "TCP",
        }
        assert targets == [
            {
                "__address__": "10.1.4.1:8080",
                M + "endpoint_port_name": "http",
                M + "endpoint_port_protocol": "TCP",
                M + "endpoint_ready": "true",
                M + "endpoint_address_target_kind": "Pod",
                M + "endpoint_address_target_name": "web-1",
                M + "endpoint_node_name": "disc-eps-n1",
                **node_labels,
                **pod_labels,
                **container,
                M + "pod_container_port_name": "http",
                M + "pod_container_port_number": "8080",
            },
            {
                "__address__": "10.1.4.9:8080",
                M + "endpoint_port_name": "http",
                M + "endpoint_port_protocol": "TCP",
                M + "endpoint_ready": "false",
                M + "endpoint_hostname": "spare",
            },
            {  # the container port no endpoint port names
                "__address__": "10.1.4.1:9100",
                **pod_labels,
                **container,
                M + "pod_container_port_name": "metrics",
                M + "pod_container_port_number": "9100",
            },
        ]

        kube.patch_status(f"{pods}/web-1", {"phase": "Succeeded"})
        await eventually(lambda: sink.group(source)[1][0][M + "pod_phase"] == "Succeeded")
        kube.delete(f"/api/v1/namespaces/{ns}/services/web")
        await eventually(lambda: sink.groups[source] == TargetGroup(source=source))


async def test_ingress_role_labels(kube: KubeAPIServer, tmp_path: Path) -> None:
    """Role ingress: one target per rule and path, https for TLS hosts (wildcards too)."""
    ns = "disc-ing"
    kube.ensure_namespace(ns)
    backend = {"service": {"name": "web", "port": {"number": 80}}}
    kube.create(
        f"/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses",
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "ingressClassName": "nginx",
                "tls": [{"hosts": ["*.example.com"]}],
                "rules": [
                    {
                        "host": "a.example.com",
                        "http": {
                            "paths": [
                                {"path": "/", "pathType": "Prefix", "backend": backend},
                                {"path": "/api", "pathType": "Prefix", "backend": backend},
                            ]
                        },
                    },
                    {
                        "host": "plain.test",
                        "http": {
                            "paths": [{"path": "/m", "pathType": "Exact", "backend": backend}]
                        },
                    },
                ],
            },
        },
    )
    async with discovering(in_ns("ingress", ns), kubeconfig_spec(kube, tmp_path / "kc")) as sink:
        source = f"ingress/{ns}/web"
        await eventually(lambda: source in sink.groups)
        labels, targets = sink.group(source)
        assert labels == {
            M + "namespace": ns,
            M + "ingress_name": "web",
            M + "ingress_label_app": "web",
            M + "ingress_labelpresent_app": "true",
            M + "ingress_class_name": "nginx",
        }

        def t(host: str, path: str, scheme: str) -> dict[str, str]:
            return {
                "__address__": host,
                M + "ingress_scheme": scheme,
                M + "ingress_host": host,
                M + "ingress_path": path,
            }

        assert targets == [
            t("a.example.com", "/", "https"),
            t("a.example.com", "/api", "https"),
            t("plain.test", "/m", "http"),
        ]


# ----------------------------------------------------------------------------- failures


class TCPProxy:
    """A loopback TCP relay that can be cut (existing connections closed, new ones refused)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.blocked = False
        self.port = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> TCPProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cut()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def cut(self) -> None:
        """Block: close every open connection; later ones are closed at once."""
        self.blocked = True
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.blocked:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers.discard(writer)
        self._writers.discard(up_writer)


def counter(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


async def test_relist_after_outage_and_compaction(kube: KubeAPIServer, tmp_path: Path) -> None:
    """Network cut; meanwhile pods are deleted, changed and created and etcd is compacted and
    the server restarted. On reconnect the watch gets 410, the informer relists, and the
    deletions made during the outage are emitted: nothing is lost, nothing is stale."""
    ns = "disc-relist"
    kube.ensure_namespace(ns)
    pods = f"/api/v1/namespaces/{ns}/pods"
    for i in range(3):
        kube.create(pods, pod(f"p{i}", ports=(("http", 8080),)))
        kube.patch_status(f"{pods}/p{i}", running(f"10.1.5.{i}"))
    token = tmp_path / "token"
    token.write_text(kube.admin_token)
    registry = CollectorRegistry()
    upstream = int(kube.url.rsplit(":", 1)[1])
    async with (
        TCPProxy(upstream) as proxy,
        discovering(
            in_ns("pod", ns), api_server_spec(proxy.url, kube, token), registry=registry
        ) as sink,
    ):
        await eventually(lambda: sink.addresses() == {f"10.1.5.{i}:8080" for i in range(3)})
        proxy.cut()
        kube.delete(f"{pods}/p0")
        kube.patch(f"{pods}/p1", {"metadata": {"labels": {"app": "changed"}}})
        kube.create(pods, pod("p3", ports=(("http", 8080),)))
        kube.patch_status(f"{pods}/p3", running("10.1.5.3"))
        await asyncio.to_thread(kube.compact)
        await asyncio.to_thread(kube.restart)
        assert sink.groups[f"pod/{ns}/p0"].targets != ()  # nothing seen yet
        proxy.blocked = False
        await eventually(
            lambda: sink.addresses() == {"10.1.5.1:8080", "10.1.5.2:8080", "10.1.5.3:8080"},
            timeout=60,
        )
        assert sink.groups[f"pod/{ns}/p0"] == TargetGroup(source=f"pod/{ns}/p0")
        assert sink.group(f"pod/{ns}/p1")[0][M + "pod_label_app"] == "changed"
        assert (
            counter(
                registry,
                "collector_kubernetes_relists_total",
                resource="pods",
                reason="expired",
            )
            == 1
        )
        assert counter(registry, "prometheus_sd_kubernetes_failures_total") >= 1


async def test_server_restart_keeps_objects(kube: KubeAPIServer, tmp_path: Path) -> None:
    """A plain API server restart ends the watch; discovery resumes from its RV, no object is
    lost or re-sent as deleted, and changes after the restart arrive."""
    ns = "disc-restart"
    kube.ensure_namespace(ns)
    svcs = f"/api/v1/namespaces/{ns}/services"
    kube.create(svcs, service("a"))
    async with discovering(in_ns("service", ns), kubeconfig_spec(kube, tmp_path / "kc")) as sink:
        await eventually(lambda: f"svc/{ns}/a" in sink.groups)
        before = sink.groups[f"svc/{ns}/a"]
        await asyncio.to_thread(kube.restart)
        kube.create(svcs, service("b"))
        await eventually(lambda: f"svc/{ns}/b" in sink.groups, timeout=60)
        assert sink.groups[f"svc/{ns}/a"] == before
        assert all(g.targets for sends in sink.sends for g in sends)  # never emptied


async def test_forbidden_is_reported_once_and_recovers(
    kube: KubeAPIServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The unprivileged token gets 403 on every list: one clear error naming the missing RBAC
    rule (not one per retry), no targets; granting the rule heals discovery."""
    ns = "disc-rbac"
    kube.ensure_namespace(ns)
    kube.create(f"/api/v1/namespaces/{ns}/pods", pod("p", ports=(("http", 8080),)))
    kube.patch_status(f"/api/v1/namespaces/{ns}/pods/p", running("10.1.6.1"))
    caplog.set_level(logging.INFO, logger="collector.discovery.kubernetes")
    spec = kubeconfig_spec(kube, tmp_path / "kc", token=kube.unprivileged_token)
    registry = CollectorRegistry()
    async with discovering(in_ns("pod", ns), spec, registry=registry) as sink:
        await eventually(lambda: counter(registry, "prometheus_sd_kubernetes_failures_total") >= 3)
        assert sink.sends == []
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert errors == [
            "kubernetes SD is missing an RBAC permission: list pods in the namespace"
            f' "{ns}" (server said: 403 Forbidden: pods is forbidden: User "prom" cannot list'
            f' resource "pods" in API group "" in the namespace "{ns}")'
        ]
        kube.create(
            f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": "sd"},
                "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]}],
            },
        )
        kube.create(
            f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "sd"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "sd"},
                "subjects": [
                    {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "prom"}
                ],
            },
        )
        await eventually(lambda: sink.addresses() == {"10.1.6.1:8080"}, timeout=60)
        assert any("recovered" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("bad_token", ["wrongtoken", "promtoken"])
async def test_credentials_fixed_on_disk_recover(
    kube: KubeAPIServer, tmp_path: Path, bad_token: str
) -> None:
    """``credentials_file`` holding a wrong (401) or unprivileged (403) token: once the file
    holds a good token, discovery recovers without a restart (Prometheus re-reads the file)."""
    ns = f"disc-creds-{bad_token}"
    kube.ensure_namespace(ns)
    kube.create(f"/api/v1/namespaces/{ns}/pods", pod("p", ports=(("http", 8080),)))
    kube.patch_status(f"/api/v1/namespaces/{ns}/pods/p", running("10.1.7.1"))
    token = tmp_path / "token"
    token.write_text(bad_token)
    registry = CollectorRegistry()
    async with discovering(
        in_ns("pod", ns), api_server_spec(kube.url, kube, token), registry=registry
    ) as sink:
        await eventually(lambda: counter(registry, "prometheus_sd_kubernetes_failures_total") >= 2)
        assert sink.sends == []
        token.write_text(kube.admin_token)
        await eventually(lambda: sink.addresses() == {"10.1.7.1:8080"}, timeout=30)


# ----------------------------------------------------------------------------- the agent


async def test_agent_discovers_pods_with_kubeconfig_file(
    kube: KubeAPIServer, tmp_path: Path
) -> None:
    """The whole agent, ``kubeconfig_file`` in the SD config: /api/v1/targets follows pods."""
    ns = "disc-agent"
    kube.ensure_namespace(ns)
    pods = f"/api/v1/namespaces/{ns}/pods"
    kube.create(pods, pod("web", ports=(("http", 8080),)))
    kube.patch_status(f"{pods}/web", running("10.1.8.1"))
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig.yaml")
    config = f"""
global:
  scrape_interval: 1h
scrape_configs:
  - job_name: pods
    kubernetes_sd_configs:
      - role: pod
        kubeconfig_file: {kubeconfig}
        namespaces: {{names: [{ns}]}}
    relabel_configs:
      - source_labels: [__meta_kubernetes_pod_name]
        target_label: pod
"""
    async with running_agent(config, tmp_path) as agent, aiohttp.ClientSession() as http:
        url = f"http://{agent.options.listen_address}/api/v1/targets"

        async def active() -> list[dict[str, Any]]:
            async with http.get(url) as resp:
                data: list[dict[str, Any]] = (await resp.json())["data"]["activeTargets"]
                return data

        async def labels_are(expected: list[dict[str, str]]) -> bool:
            got = sorted((t["labels"] for t in await active()), key=lambda x: x["instance"])
            return got == expected

        await eventually(
            lambda: labels_are([{"instance": "10.1.8.1:8080", "job": "pods", "pod": "web"}])
        )
        (target,) = await active()
        assert target["discoveredLabels"][M + "pod_container_port_name"] == "http"
        assert target["scrapeUrl"] == "http://10.1.8.1:8080/metrics"

        kube.create(pods, pod("api", ports=(("http", 8080),)))
        kube.patch_status(f"{pods}/api", running("10.1.8.2"))
        kube.delete(f"{pods}/web")
        await eventually(
            lambda: labels_are([{"instance": "10.1.8.2:8080", "job": "pods", "pod": "api"}])
        )
