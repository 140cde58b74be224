"""The Kubernetes rig itself works: a real kube-apiserver v1.20.2 + etcd, and vmagent as SD oracle.

These tests check the rig (tests/integration/kube.py), not the agent's discovery. They need the
binary from ``scripts/kube-apiserver.sh``; without it they fail with that script's name.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client, config

from tests.integration.kube import (
    KUBE_VERSION,
    KubeAPIError,
    KubeAPIServer,
    kube_apiserver,
)
from tests.integration.vmagent import vmagent_oracle

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeAPIServer]:
    with kube_apiserver(tmp_path_factory.mktemp("kube")) as server:
        yield server


def pod(name: str, *, node: str = "rig-node-1", labels: dict[str, str] | None = None) -> Any:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {"app": name}},
        "spec": {
            "nodeName": node,
            "containers": [
                {
                    "name": "app",
                    "image": "example.invalid/app:1",
                    "ports": [
                        {"name": "http", "containerPort": 8080, "protocol": "TCP"},
                        {"name": "metrics", "containerPort": 9100, "protocol": "TCP"},
                    ],
                }
            ],
        },
    }


def running(ip: str) -> dict[str, Any]:
    return {
        "phase": "Running",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "hostIP": "127.0.0.1",
        "conditions": [{"type": "Ready", "status": "True"}],
    }


# ----------------------------------------------------------------------------- the server


def test_server_answers_with_auth(kube: KubeAPIServer) -> None:
    version = kube.get("/version")
    assert version["gitVersion"] == KUBE_VERSION

    status, _ = kube.request("GET", "/readyz")
    assert status == 200

    # A wrong token is a 401; no token at all is system:anonymous (anonymous auth is on by
    # default, as in most clusters), which RBAC forbids.
    status, body = kube.request("GET", "/api/v1/pods", token="wrongtoken")
    assert (status, body["reason"]) == (401, "Unauthorized")
    status, body = kube.request("GET", "/api/v1/pods", token="")
    assert (status, body["reason"]) == (403, "Forbidden")
    assert 'User "system:anonymous" cannot list' in body["message"]

    status, body = kube.request("GET", "/api/v1/pods", token=kube.unprivileged_token)
    assert status == 403
    assert body["reason"] == "Forbidden"
    assert body["message"] == (
        'pods is forbidden: User "prom" cannot list resource "pods" in API group "" at the'
        " cluster scope"
    )

    # v1.20 serves EndpointSlices only as v1beta1.
    assert kube.request("GET", "/apis/discovery.k8s.io/v1/endpointslices")[0] == 404
    assert kube.get("/apis/discovery.k8s.io/v1beta1/endpointslices")["items"] == []


def test_objects_can_be_created_patched_and_deleted(kube: KubeAPIServer) -> None:
    kube.ensure_namespace("rig-crud")
    kube.ensure_namespace("rig-crud")  # idempotent
    pods = "/api/v1/namespaces/rig-crud/pods"

    created = kube.create(pods, pod("web-1"))
    assert created["status"]["phase"] == "Pending"  # the server resets status on create
    assert "podIP" not in created["status"]

    patched = kube.patch_status(f"{pods}/web-1", running("10.244.0.7"))
    assert patched["status"]["podIP"] == "10.244.0.7"
    assert patched["status"]["phase"] == "Running"

    relabeled = kube.patch(f"{pods}/web-1", {"metadata": {"labels": {"tier": "front"}}})
    assert relabeled["metadata"]["labels"] == {"app": "web-1", "tier": "front"}
    assert int(relabeled["metadata"]["resourceVersion"]) > int(
        created["metadata"]["resourceVersion"]
    )

    listed = kube.get(pods, labelSelector="tier=front")
    assert [item["metadata"]["name"] for item in listed["items"]] == ["web-1"]
    assert "kind" not in listed["items"][0]  # list items carry no kind

    with pytest.raises(KubeAPIError) as conflict:
        kube.create(pods, pod("web-1"))
    assert (conflict.value.code, conflict.value.reason) == (409, "AlreadyExists")

    # Nodes keep the status given on create; services and endpoints are plain objects.
    node = kube.create(
        "/api/v1/nodes",
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": "rig-crud-node", "labels": {"zone": "a"}},
            "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.9"}]},
        },
    )
    assert node["status"]["addresses"] == [{"type": "InternalIP", "address": "10.0.0.9"}]
    service = kube.create(
        "/api/v1/namespaces/rig-crud/services",
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web-1"}, "ports": [{"name": "http", "port": 80}]},
        },
    )
    assert service["spec"]["clusterIP"].startswith("10.96.")
    kube.create(
        "/api/v1/namespaces/rig-crud/endpoints",
        {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": "web"},
            "subsets": [
                {
                    "addresses": [
                        {"ip": "10.244.0.7", "targetRef": {"kind": "Pod", "name": "web-1"}}
                    ],
                    "ports": [{"name": "http", "port": 8080}],
                }
            ],
        },
    )

    kube.delete(f"{pods}/web-1")  # bound pod, grace period 0: gone at once
    with pytest.raises(KubeAPIError) as missing:
        kube.get(f"{pods}/web-1")
    assert (missing.value.code, missing.value.reason) == (404, "NotFound")
    # Deleting a Service deletes its Endpoints too (service storage, no controller involved).
    kube.delete("/api/v1/namespaces/rig-crud/services/web")
    assert kube.request("GET", "/api/v1/namespaces/rig-crud/endpoints/web")[0] == 404
    kube.delete("/api/v1/nodes/rig-crud-node")


async def test_kubeconfig_works_for_kubernetes_asyncio(kube: KubeAPIServer, tmp_path: Path) -> None:
    kube.ensure_namespace("rig-kubeconfig")
    kube.create("/api/v1/namespaces/rig-kubeconfig/pods", pod("kc-1"))

    async def pod_names(kubeconfig: Path) -> list[str]:
        configuration = client.Configuration()
        await config.load_kube_config(
            config_file=str(kubeconfig), client_configuration=configuration, persist_config=False
        )
        async with client.ApiClient(configuration) as api:
            pods = await client.CoreV1Api(api).list_namespaced_pod("rig-kubeconfig")
            return [p.metadata.name for p in pods.items]

    assert await pod_names(kube.write_kubeconfig(tmp_path / "verified.yaml")) == ["kc-1"]
    embedded = kube.write_kubeconfig(tmp_path / "embedded.yaml", embed_ca=True)
    assert await pod_names(embedded) == ["kc-1"]
    insecure = kube.write_kubeconfig(tmp_path / "insecure.yaml", insecure=True)
    assert await pod_names(insecure) == ["kc-1"]
    unprivileged = kube.write_kubeconfig(tmp_path / "prom.yaml", kube.unprivileged_token)
    with pytest.raises(client.ApiException) as forbidden:
        await pod_names(unprivileged)
    assert forbidden.value.status == 403


def test_compact_expires_continue_tokens(kube: KubeAPIServer) -> None:
    kube.ensure_namespace("rig-compact")
    maps = "/api/v1/namespaces/rig-compact/configmaps"
    for i in range(3):
        kube.create(maps, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"c{i}"}})
    first = kube.get(maps, limit=1)
    token = first["metadata"]["continue"]
    assert token

    revision = kube.compact()
    assert revision > int(first["metadata"]["resourceVersion"])
    assert kube.etcd_revision() == revision  # compaction does not write

    with pytest.raises(KubeAPIError) as expired:
        kube.get(maps, limit=1, **{"continue": token})
    assert (expired.value.code, expired.value.reason) == (410, "Expired")
    status, body = kube.request(
        "GET",
        maps,
        query={
            "resourceVersion": first["metadata"]["resourceVersion"],
            "resourceVersionMatch": "Exact",
        },
    )
    assert (status, body["reason"]) == (410, "Expired")


def test_restart_keeps_objects_and_expires_old_watch_versions(kube: KubeAPIServer) -> None:
    kube.ensure_namespace("rig-restart")
    maps = "/api/v1/namespaces/rig-restart/configmaps"
    before = kube.create(
        maps, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kept"}}
    )
    old_rv = int(before["metadata"]["resourceVersion"]) - 1
    kube.create(maps, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "later"}})
    kube.compact()
    kube.restart()

    assert kube.get(f"{maps}/kept")["metadata"]["uid"] == before["metadata"]["uid"]
    # The watch cache restarted at the compacted revision: an older RV gets an ERROR 410 event.
    status, body = kube.request(
        "GET", maps, query={"watch": True, "resourceVersion": old_rv, "timeoutSeconds": 5}
    )
    assert status == 200
    events = [json.loads(line) for line in body.splitlines()] if isinstance(body, str) else [body]
    assert events[0]["type"] == "ERROR"
    assert events[0]["object"]["code"] == 410
    assert events[0]["object"]["reason"] == "Expired"


# ----------------------------------------------------------------------------- vmagent oracle


SCRAPE_CONFIGS = """
scrape_configs:
  - job_name: rig-pods
    scrape_interval: 1h
    kubernetes_sd_configs:
      - role: pod
        namespaces: {names: [rig-vmagent]}
  - job_name: rig-services
    scrape_interval: 1h
    kubernetes_sd_configs:
      - role: service
        namespaces: {names: [rig-vmagent]}
  - job_name: rig-endpoints
    scrape_interval: 1h
    kubernetes_sd_configs:
      - role: endpoints
        namespaces: {names: [rig-vmagent]}
  - job_name: rig-nodes
    scrape_interval: 1h
    kubernetes_sd_configs:
      - role: node
    relabel_configs:
      - source_labels: [__meta_kubernetes_node_name]
        regex: rig-vmagent-.*
        action: keep
"""


def by(labels: list[dict[str, str]], key: str, value: str) -> list[dict[str, str]]:
    return [item for item in labels if item.get(key) == value]


def test_vmagent_discovers_pods_services_endpoints_and_nodes(
    kube: KubeAPIServer, tmp_path: Path
) -> None:
    kube.ensure_namespace("rig-vmagent")
    pods = "/api/v1/namespaces/rig-vmagent/pods"
    with vmagent_oracle(tmp_path, kube, SCRAPE_CONFIGS) as oracle:
        assert oracle.discovered("rig-pods") == []

        kube.create(pods, pod("web-7", labels={"app": "web"}))
        kube.patch_status(f"{pods}/web-7", running("10.244.1.7"))
        oracle.wait_for(
            lambda data: (
                len(by(oracle.discovered("rig-pods"), "__meta_kubernetes_pod_name", "web-7")) == 2
            ),
            what="vmagent discovers pod web-7 (one target per container port)",
        )
        targets = by(oracle.discovered("rig-pods"), "__meta_kubernetes_pod_name", "web-7")
        by_port = {t["__meta_kubernetes_pod_container_port_name"]: t for t in targets}
        http = by_port["http"]
        assert http["__address__"] == "10.244.1.7:8080"
        assert by_port["metrics"]["__address__"] == "10.244.1.7:9100"
        assert http["job"] == "rig-pods"
        assert http["__meta_kubernetes_namespace"] == "rig-vmagent"
        assert http["__meta_kubernetes_pod_ip"] == "10.244.1.7"
        assert http["__meta_kubernetes_pod_node_name"] == "rig-node-1"
        assert http["__meta_kubernetes_pod_host_ip"] == "127.0.0.1"
        assert http["__meta_kubernetes_pod_phase"] == "Running"
        assert http["__meta_kubernetes_pod_ready"] == "true"
        assert http["__meta_kubernetes_pod_label_app"] == "web"
        assert http["__meta_kubernetes_pod_container_name"] == "app"
        assert http["__meta_kubernetes_pod_container_port_number"] == "8080"
        assert http["__meta_kubernetes_pod_container_port_protocol"] == "TCP"
        assert http["__meta_kubernetes_pod_uid"]
        active = [
            t
            for t in oracle.targets()["activeTargets"]
            if t["discoveredLabels"].get("__meta_kubernetes_pod_name") == "web-7"
        ]
        assert sorted(t["labels"]["instance"] for t in active) == [
            "10.244.1.7:8080",
            "10.244.1.7:9100",
        ]
        assert {t["labels"]["job"] for t in active} == {"rig-pods"}

        # Service + Endpoints (created by hand: no endpoints controller runs).
        kube.create(
            "/api/v1/namespaces/rig-vmagent/services",
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "web", "labels": {"team": "shop"}},
                "spec": {
                    "selector": {"app": "web"},
                    "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
                },
            },
        )
        kube.create(
            "/api/v1/namespaces/rig-vmagent/endpoints",
            {
                "apiVersion": "v1",
                "kind": "Endpoints",
                "metadata": {"name": "web", "labels": {"team": "shop"}},
                "subsets": [
                    {
                        "addresses": [
                            {
                                "ip": "10.244.1.7",
                                "nodeName": "rig-node-1",
                                "targetRef": {
                                    "kind": "Pod",
                                    "name": "web-7",
                                    "namespace": "rig-vmagent",
                                },
                            }
                        ],
                        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                    }
                ],
            },
        )
        kube.create(
            "/api/v1/nodes",
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": "rig-vmagent-node", "labels": {"zone": "a"}},
                "status": {
                    "addresses": [
                        {"type": "Hostname", "address": "rig-vmagent-node"},
                        {"type": "InternalIP", "address": "10.0.0.21"},
                    ],
                    "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                },
            },
        )
        oracle.wait_for(
            lambda data: (
                bool(oracle.discovered("rig-services"))
                and bool(oracle.discovered("rig-endpoints"))
                and bool(oracle.discovered("rig-nodes"))
            ),
            what="vmagent discovers the service, its endpoints and the node",
        )
        (service,) = oracle.discovered("rig-services")
        assert service["__address__"] == "web.rig-vmagent.svc:80"
        assert service["__meta_kubernetes_service_name"] == "web"
        assert service["__meta_kubernetes_service_port_name"] == "http"
        assert service["__meta_kubernetes_service_label_team"] == "shop"
        endpoints = oracle.discovered("rig-endpoints")
        pod_port = by(endpoints, "__address__", "10.244.1.7:8080")
        assert pod_port
        assert pod_port[0]["__meta_kubernetes_endpoints_name"] == "web"
        assert pod_port[0]["__meta_kubernetes_pod_name"] == "web-7"
        assert pod_port[0]["__meta_kubernetes_endpoint_ready"] == "true"
        (node,) = oracle.discovered("rig-nodes")
        assert node["__address__"] == "10.0.0.21:10250"
        assert node["__meta_kubernetes_node_name"] == "rig-vmagent-node"
        assert node["__meta_kubernetes_node_label_zone"] == "a"
        assert node["__meta_kubernetes_node_address_InternalIP"] == "10.0.0.21"

        # Deletions reach the oracle too.
        kube.delete(f"{pods}/web-7")
        kube.delete("/api/v1/nodes/rig-vmagent-node")
        oracle.wait_for(
            lambda data: (
                not by(oracle.discovered("rig-pods"), "__meta_kubernetes_pod_name", "web-7")
                and not oracle.discovered("rig-nodes")
            ),
            what="vmagent forgets the deleted pod and node",
        )
