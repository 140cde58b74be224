"""Role converters on the sample objects: every label written out from spec §2.4/§2.5."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from collector.discovery.kubernetes import endpoints, objects, roles
from collector.model.targetgroup import TargetGroup

FIXTURES = Path(__file__).parents[2] / "fixtures" / "k8s"
M = "__meta_kubernetes_"


def raw(name: str) -> dict[str, Any]:
    """Load one sample object."""
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def as_sets(group: TargetGroup) -> tuple[dict[str, str], list[dict[str, str]]]:
    """Group labels and targets as plain dicts for comparison."""
    return dict(group.labels), [dict(t) for t in group.targets]


NODE_NAME = "ip-10-0-1-23.eu-west-1.compute.internal"

NODE_META = {
    f"{M}node_name": NODE_NAME,
    f"{M}node_label_beta_kubernetes_io_arch": "amd64",
    f"{M}node_labelpresent_beta_kubernetes_io_arch": "true",
    f"{M}node_label_beta_kubernetes_io_instance_type": "m5.xlarge",
    f"{M}node_labelpresent_beta_kubernetes_io_instance_type": "true",
    f"{M}node_label_beta_kubernetes_io_os": "linux",
    f"{M}node_labelpresent_beta_kubernetes_io_os": "true",
    f"{M}node_label_failure_domain_beta_kubernetes_io_region": "eu-west-1",
    f"{M}node_labelpresent_failure_domain_beta_kubernetes_io_region": "true",
    f"{M}node_label_failure_domain_beta_kubernetes_io_zone": "eu-west-1a",
    f"{M}node_labelpresent_failure_domain_beta_kubernetes_io_zone": "true",
    f"{M}node_label_kubernetes_io_arch": "amd64",
    f"{M}node_labelpresent_kubernetes_io_arch": "true",
    f"{M}node_label_kubernetes_io_hostname": NODE_NAME,
    f"{M}node_labelpresent_kubernetes_io_hostname": "true",
    f"{M}node_label_kubernetes_io_os": "linux",
    f"{M}node_labelpresent_kubernetes_io_os": "true",
    # node-role.kubernetes.io/worker="" -> only the labelpresent variant (spec §2.4)
    f"{M}node_labelpresent_node_role_kubernetes_io_worker": "true",
    f"{M}node_label_node_kubernetes_io_instance_type": "m5.xlarge",
    f"{M}node_labelpresent_node_kubernetes_io_instance_type": "true",
    f"{M}node_label_topology_kubernetes_io_region": "eu-west-1",
    f"{M}node_labelpresent_topology_kubernetes_io_region": "true",
    f"{M}node_label_topology_kubernetes_io_zone": "eu-west-1a",
    f"{M}node_labelpresent_topology_kubernetes_io_zone": "true",
    f"{M}node_annotation_alpha_kubernetes_io_provided_node_ip": "10.0.1.23",
    f"{M}node_annotationpresent_alpha_kubernetes_io_provided_node_ip": "true",
    f"{M}node_annotation_csi_volume_kubernetes_io_nodeid": '{"ebs.csi.aws.com":"i-0a1b2c3d4e5f67890"}',  # noqa: E501
    f"{M}node_annotationpresent_csi_volume_kubernetes_io_nodeid": "true",
    f"{M}node_annotation_node_alpha_kubernetes_io_ttl": "0",
    f"{M}node_annotationpresent_node_alpha_kubernetes_io_ttl": "true",
    f"{M}node_annotation_volumes_kubernetes_io_controller_managed_attach_detach": "true",
    f"{M}node_annotationpresent_volumes_kubernetes_io_controller_managed_attach_detach": "true",
}

WEB_POD = {
    f"{M}pod_name": "web-7d4b9c8f6d-x2k9p",
    f"{M}pod_ip": "10.0.1.57",
    f"{M}pod_ready": "true",
    f"{M}pod_phase": "Running",
    f"{M}pod_node_name": NODE_NAME,
    f"{M}pod_host_ip": "10.0.1.23",
    f"{M}pod_uid": "177f0340-3151-4b26-b5ab-8aae1dd97d75",
    f"{M}pod_controller_kind": "ReplicaSet",
    f"{M}pod_controller_name": "web-7d4b9c8f6d",
    f"{M}pod_label_app_kubernetes_io_component": "frontend",
    f"{M}pod_labelpresent_app_kubernetes_io_component": "true",
    f"{M}pod_label_app_kubernetes_io_name": "web",
    f"{M}pod_labelpresent_app_kubernetes_io_name": "true",
    f"{M}pod_label_pod_template_hash": "7d4b9c8f6d",
    f"{M}pod_labelpresent_pod_template_hash": "true",
    f"{M}pod_annotation_prometheus_io_path": "/metrics",
    f"{M}pod_annotationpresent_prometheus_io_path": "true",
    f"{M}pod_annotation_prometheus_io_port": "9113",
    f"{M}pod_annotationpresent_prometheus_io_port": "true",
    f"{M}pod_annotation_prometheus_io_scrape": "true",
    f"{M}pod_annotationpresent_prometheus_io_scrape": "true",
}

NGINX_ID = "containerd://f3fff27dbd5c2f8b0208100ea2990578ab795eea785f586b1ddc60b8833e01d8"
EXPORTER_ID = "containerd://cf44a373291fb5e928784e71b28aaf80e7043a4f57160bee523c35f009053131"

WEB_SERVICE = {
    f"{M}namespace": "shop",
    f"{M}service_name": "web",
    f"{M}service_label_app_kubernetes_io_name": "web",
    f"{M}service_labelpresent_app_kubernetes_io_name": "true",
    f"{M}service_annotation_prometheus_io_port": "9113",
    f"{M}service_annotationpresent_prometheus_io_port": "true",
    f"{M}service_annotation_prometheus_io_scrape": "true",
    f"{M}service_annotationpresent_prometheus_io_scrape": "true",
}


def test_node_sample() -> None:
    """The sample node: InternalIP:kubelet port, instance = name, first address per type."""
    group = roles.node_group(objects.node_from_raw(raw("node.json")))
    assert group is not None
    assert group.source == f"node/{NODE_NAME}"
    labels, targets = as_sets(group)
    assert labels == {
        **NODE_META,
        f"{M}node_provider_id": "aws:///eu-west-1a/i-0a1b2c3d4e5f67890",
        f"{M}node_condition_memorypressure": "false",
        f"{M}node_condition_diskpressure": "false",
        f"{M}node_condition_pidpressure": "false",
        f"{M}node_condition_ready": "true",
    }
    assert targets == [
        {
            "__address__": "10.0.1.23:10250",
            "instance": NODE_NAME,
            f"{M}node_address_InternalIP": "10.0.1.23",
            f"{M}node_address_ExternalIP": "203.0.113.25",
            f"{M}node_address_InternalDNS": NODE_NAME,
            f"{M}node_address_Hostname": NODE_NAME,
        }
    ]


@pytest.mark.parametrize(
    ("addresses", "expected"),
    [
        pytest.param(
            [("Hostname", "h"), ("ExternalIP", "1.2.3.4"), ("InternalDNS", "d")],
            "d:10250",
            id="internal-dns-before-external-ip",
        ),
        pytest.param(
            [("Hostname", "h"), ("ExternalIP", "1.2.3.4")], "1.2.3.4:10250", id="external-ip"
        ),
        pytest.param(
            [("Hostname", "h"), ("ExternalDNS", "e")], "e:10250", id="external-dns-before-host"
        ),
        pytest.param(
            [("Hostname", "h"), ("LegacyHostIP", "9.9.9.9")], "9.9.9.9:10250", id="legacy"
        ),
        pytest.param([("Hostname", "h")], "h:10250", id="hostname-only"),
        pytest.param(
            [("InternalIP", "fd00::1"), ("InternalIP", "10.0.0.1")],
            "[fd00::1]:10250",
            id="ipv6-first-internal-ip-bracketed",
        ),
    ],
)
def test_node_address_priority(addresses: list[tuple[str, str]], expected: str) -> None:
    """Address priority is InternalIP > InternalDNS > ExternalIP > ExternalDNS > Legacy > Host."""
    node = objects.node_from_raw(
        {
            "metadata": {"name": "n"},
            "status": {
                "addresses": [{"type": t, "address": a} for t, a in addresses],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            },
        }
    )
    group = roles.node_group(node)
    assert group is not None
    assert group.targets[0]["__address__"] == expected
    assert group.labels == {f"{M}node_name": "n"}


def test_node_without_address_sends_nothing() -> None:
    """A node with no usable address yields no group at all."""
    node = objects.node_from_raw({"metadata": {"name": "n"}, "status": {"addresses": []}})
    assert roles.node_group(node) is None


def test_pod_web_running() -> None:
    """The web pod: one target per container port, container id/image/init from statuses."""
    group = roles.pod_group(objects.pod_from_raw(raw("pod-web-running.json")))
    assert group.source == "pod/shop/web-7d4b9c8f6d-x2k9p"
    labels, targets = as_sets(group)
    assert labels == {f"{M}namespace": "shop", **WEB_POD}
    nginx = {
        f"{M}pod_container_name": "nginx",
        f"{M}pod_container_id": NGINX_ID,
        f"{M}pod_container_image": "nginx:1.25.4",
        f"{M}pod_container_init": "false",
    }
    assert targets == [
        {
            "__address__": "10.0.1.57:80",
            **nginx,
            f"{M}pod_container_port_name": "http",
            f"{M}pod_container_port_number": "80",
            f"{M}pod_container_port_protocol": "TCP",
        },
        {
            "__address__": "10.0.1.57:443",
            **nginx,
            f"{M}pod_container_port_name": "https",
            f"{M}pod_container_port_number": "443",
            f"{M}pod_container_port_protocol": "TCP",
        },
        {
            "__address__": "10.0.1.57:9113",
            f"{M}pod_container_name": "exporter",
            f"{M}pod_container_id": EXPORTER_ID,
            f"{M}pod_container_image": "nginx/nginx-prometheus-exporter:1.1.0",
            f"{M}pod_container_init": "false",
            f"{M}pod_container_port_name": "metrics",
            f"{M}pod_container_port_number": "9113",
            f"{M}pod_container_port_protocol": "TCP",
        },
    ]


def test_pod_daemonset_with_init_container_and_node_metadata() -> None:
    """DaemonSet pod: init container without ports gives a port-less target; node metadata."""
    node = objects.node_from_raw(raw("node.json"))
    group = roles.pod_group(
        objects.pod_from_raw(raw("pod-node-exporter-daemonset.json")), attach_node=True, node=node
    )
    assert group.source == "pod/monitoring/node-exporter-8fz4q"
    labels, targets = as_sets(group)
    assert labels == {
        f"{M}namespace": "monitoring",
        f"{M}pod_name": "node-exporter-8fz4q",
        f"{M}pod_ip": "10.0.1.23",
        f"{M}pod_ready": "true",
        f"{M}pod_phase": "Running",
        f"{M}pod_node_name": NODE_NAME,
        f"{M}pod_host_ip": "10.0.1.23",
        f"{M}pod_uid": "156845a5-a758-4e5f-a64d-c3779269be47",
        f"{M}pod_controller_kind": "DaemonSet",
        f"{M}pod_controller_name": "node-exporter",
        f"{M}pod_label_app_kubernetes_io_component": "exporter",
        f"{M}pod_labelpresent_app_kubernetes_io_component": "true",
        f"{M}pod_label_app_kubernetes_io_name": "node-exporter",
        f"{M}pod_labelpresent_app_kubernetes_io_name": "true",
        f"{M}pod_label_controller_revision_hash": "6c9d8f7b5",
        f"{M}pod_labelpresent_controller_revision_hash": "true",
        f"{M}pod_label_pod_template_generation": "3",
        f"{M}pod_labelpresent_pod_template_generation": "true",
        f"{M}pod_annotation_kubectl_kubernetes_io_default_container": "node-exporter",
        f"{M}pod_annotationpresent_kubectl_kubernetes_io_default_container": "true",
        **NODE_META,
    }
    assert targets == [
        {
            "__address__": "10.0.1.23:9100",
            f"{M}pod_container_name": "node-exporter",
            f"{M}pod_container_id": "containerd://10122f38d52cc9aa5d00c8ec2a5a8762811c14da1ae3bf7c712f9f2d29dda944",
            f"{M}pod_container_image": "quay.io/prometheus/node-exporter:v1.8.0",
            f"{M}pod_container_init": "false",
            f"{M}pod_container_port_name": "metrics",
            f"{M}pod_container_port_number": "9100",
            f"{M}pod_container_port_protocol": "TCP",
        },
        {
            "__address__": "10.0.1.23",
            f"{M}pod_container_name": "init-textfile-dir",
            f"{M}pod_container_id": "containerd://3ef71ebefe8e4f16d6100ca11c9e62ca969264c115e08c77d85cd5b527a74e0c",
            f"{M}pod_container_image": "busybox:1.36.1",
            f"{M}pod_container_init": "true",
        },
    ]


def test_pod_pending_without_ip_is_empty_group() -> None:
    """A pod with no podIP yields an empty group (deletion), spec §11 #2."""
    group = roles.pod_group(objects.pod_from_raw(raw("pod-report-worker-pending.json")))
    assert group == TargetGroup(source="pod/shop/report-worker-5f9c7b6d48-qwz7t")


def test_pod_evicted_loses_targets() -> None:
    """Running -> evicted (podIP becomes "") turns the same source into an empty group."""
    evicted = raw("pod-web-running.json")
    evicted["status"] = {"phase": "Failed", "reason": "Evicted"}
    group = roles.pod_group(objects.pod_from_raw(evicted))
    assert group.source == "pod/shop/web-7d4b9c8f6d-x2k9p"
    assert group.targets == ()


def test_pod_attach_node_missing_node_is_empty_group() -> None:
    """With attach_metadata.node a pod whose node is not in the store yields an empty group."""
    group = roles.pod_group(
        objects.pod_from_raw(raw("pod-web-running.json")), attach_node=True, node=None
    )
    assert group.targets == ()


def test_pod_containers_with_and_without_ports() -> None:
    """Spec §11 #3: container a (8080, 9090) and b (no ports) give three targets."""
    pod = objects.pod_from_raw(
        {
            "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
            "spec": {
                "nodeName": "n1",
                "containers": [
                    {
                        "name": "a",
                        "image": "img-a",
                        "ports": [
                            {"containerPort": 8080, "protocol": "TCP"},
                            {"containerPort": 9090, "protocol": "TCP", "name": "m"},
                        ],
                    },
                    {"name": "b", "image": "img-b"},
                ],
            },
            "status": {"podIP": "10.1.1.1", "phase": "Running"},
        }
    )
    group = roles.pod_group(pod)
    labels, targets = as_sets(group)
    assert labels == {
        f"{M}namespace": "ns",
        f"{M}pod_name": "p",
        f"{M}pod_ip": "10.1.1.1",
        f"{M}pod_ready": "unknown",
        f"{M}pod_phase": "Running",
        f"{M}pod_node_name": "n1",
        f"{M}pod_uid": "u",
    }
    assert targets == [
        {
            "__address__": "10.1.1.1:8080",
            f"{M}pod_container_name": "a",
            f"{M}pod_container_image": "img-a",
            f"{M}pod_container_init": "false",
            f"{M}pod_container_port_number": "8080",
            f"{M}pod_container_port_protocol": "TCP",
        },
        {
            "__address__": "10.1.1.1:9090",
            f"{M}pod_container_name": "a",
            f"{M}pod_container_image": "img-a",
            f"{M}pod_container_init": "false",
            f"{M}pod_container_port_number": "9090",
            f"{M}pod_container_port_name": "m",
            f"{M}pod_container_port_protocol": "TCP",
        },
        {
            "__address__": "10.1.1.1",
            f"{M}pod_container_name": "b",
            f"{M}pod_container_image": "img-b",
            f"{M}pod_container_init": "false",
        },
    ]


def test_pod_empty_label_only_present() -> None:
    """Spec §11 #5: an empty k8s label value gives only the labelpresent label."""
    pod = objects.pod_from_raw(
        {
            "metadata": {"name": "p", "namespace": "ns", "labels": {"app.kubernetes.io/name": ""}},
            "spec": {"containers": [{"name": "c"}]},
            "status": {"podIP": "10.1.1.1"},
        }
    )
    labels = roles.pod_group(pod).labels
    assert f"{M}pod_label_app_kubernetes_io_name" not in labels
    assert labels[f"{M}pod_labelpresent_app_kubernetes_io_name"] == "true"


def test_pod_ipv6_bracketed() -> None:
    """An IPv6 pod IP is bracketed with a port, bare without one."""
    pod = objects.pod_from_raw(
        {
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {
                "containers": [
                    {"name": "a", "ports": [{"containerPort": 80}]},
                    {"name": "b"},
                ]
            },
            "status": {"podIP": "fd00::7"},
        }
    )
    targets = roles.pod_group(pod).targets
    assert [t["__address__"] for t in targets] == ["[fd00::7]:80", "fd00::7"]


def test_pod_namespace_metadata() -> None:
    """attach_metadata.namespace adds namespace labels and annotations with presence flags."""
    ns = objects.namespace_from_raw(
        {"metadata": {"name": "shop", "labels": {"team": "a"}, "annotations": {"x/y": "1"}}}
    )
    labels = roles.pod_group(objects.pod_from_raw(raw("pod-web-running.json")), namespace=ns).labels
    assert {k: v for k, v in labels.items() if k.startswith(f"{M}namespace")} == {
        f"{M}namespace": "shop",
        f"{M}namespace_label_team": "a",
        f"{M}namespace_labelpresent_team": "true",
        f"{M}namespace_annotation_x_y": "1",
        f"{M}namespace_annotationpresent_x_y": "true",
    }


def test_service_sample() -> None:
    """The ClusterIP service: one target per port at <name>.<ns>.svc:<port>."""
    group = roles.service_group(objects.service_from_raw(raw("service-web.json")))
    assert group.source == "svc/shop/web"
    labels, targets = as_sets(group)
    assert labels == WEB_SERVICE
    common = {
        f"{M}service_port_protocol": "TCP",
        f"{M}service_type": "ClusterIP",
        f"{M}service_cluster_ip": "172.20.88.14",
    }
    assert targets == [
        {
            "__address__": "web.shop.svc:80",
            f"{M}service_port_name": "http",
            f"{M}service_port_number": "80",
            **common,
        },
        {
            "__address__": "web.shop.svc:9113",
            f"{M}service_port_name": "metrics",
            f"{M}service_port_number": "9113",
            **common,
        },
    ]


@pytest.mark.parametrize(
    ("spec", "status", "expected"),
    [
        pytest.param(
            {"type": "LoadBalancer", "clusterIP": "10.0.0.1", "loadBalancerIP": "1.1.1.1"},
            {
                "loadBalancer": {
                    "ingress": [{"ip": "2.2.2.2"}, {"hostname": "h"}, {"ip": "3.3.3.3"}]
                }
            },
            {
                f"{M}service_type": "LoadBalancer",
                f"{M}service_cluster_ip": "10.0.0.1",
                f"{M}service_loadbalancer_ip": "2.2.2.2,3.3.3.3",
            },
            id="lb-status-ips",
        ),
        pytest.param(
            {"type": "LoadBalancer", "clusterIP": "10.0.0.1", "loadBalancerIP": "1.1.1.1"},
            {"loadBalancer": {}},
            {
                f"{M}service_type": "LoadBalancer",
                f"{M}service_cluster_ip": "10.0.0.1",
                f"{M}service_loadbalancer_ip": "1.1.1.1",
            },
            id="lb-spec-fallback",
        ),
        pytest.param(
            {"type": "ExternalName", "externalName": "db.example.com"},
            {},
            {f"{M}service_type": "ExternalName", f"{M}service_external_name": "db.example.com"},
            id="external-name",
        ),
    ],
)
def test_service_types(
    spec: dict[str, Any], status: dict[str, Any], expected: dict[str, str]
) -> None:
    """Per-type service labels: loadbalancer_ip (3.x rule), external_name vs cluster_ip."""
    svc = objects.service_from_raw(
        {
            "metadata": {"name": "s", "namespace": "n"},
            "spec": {**spec, "ports": [{"port": 5432, "protocol": "TCP"}]},
            "status": status,
        }
    )
    (target,) = roles.service_group(svc).targets
    assert dict(target) == {
        "__address__": "s.n.svc:5432",
        f"{M}service_port_number": "5432",
        f"{M}service_port_protocol": "TCP",
        **expected,
    }


def _pods(*pods: objects.Pod) -> endpoints.PodLookup:
    by_key = {(p.namespace, p.name): p for p in pods}

    def get(ns: str, name: str) -> objects.Pod | None:
        return by_key.get((ns, name))

    return get


WEB_ENDPOINT_POD_TARGET = {
    f"{M}endpoint_address_target_kind": "Pod",
    f"{M}endpoint_address_target_name": "web-7d4b9c8f6d-x2k9p",
    f"{M}endpoint_node_name": NODE_NAME,
    **WEB_POD,
}


def test_endpoints_sample_joined() -> None:
    """Endpoints joined with Service and Pod; extra pod port 443 becomes its own target."""
    node = objects.node_from_raw(raw("node.json"))
    group = endpoints.endpoints_group(
        objects.endpoints_from_raw(raw("endpoints-web.json")),
        service=objects.service_from_raw(raw("service-web.json")),
        get_pod=_pods(objects.pod_from_raw(raw("pod-web-running.json"))),
        attach_node=True,
        get_node=lambda n: node if n == NODE_NAME else None,
    )
    assert group.source == "endpoints/shop/web"
    labels, targets = as_sets(group)
    assert labels == {
        **WEB_SERVICE,
        f"{M}endpoints_name": "web",
        f"{M}endpoints_label_app_kubernetes_io_name": "web",
        f"{M}endpoints_labelpresent_app_kubernetes_io_name": "true",
        f"{M}endpoints_annotation_endpoints_kubernetes_io_last_change_trigger_time": "2024-05-14T08:02:24Z",  # noqa: E501
        f"{M}endpoints_annotationpresent_endpoints_kubernetes_io_last_change_trigger_time": "true",
    }
    not_ready = {
        f"{M}endpoint_ready": "false",
        f"{M}endpoint_port_protocol": "TCP",
        f"{M}endpoint_address_target_kind": "Pod",
        f"{M}endpoint_address_target_name": "web-7d4b9c8f6d-lm4tz",
        f"{M}endpoint_node_name": "ip-10-0-2-44.eu-west-1.compute.internal",
    }
    assert targets == [
        {
            "__address__": "10.0.1.57:9113",
            f"{M}endpoint_port_name": "metrics",
            f"{M}endpoint_port_protocol": "TCP",
            f"{M}endpoint_ready": "true",
            **WEB_ENDPOINT_POD_TARGET,
            **NODE_META,
            f"{M}pod_container_name": "exporter",
            f"{M}pod_container_image": "nginx/nginx-prometheus-exporter:1.1.0",
            f"{M}pod_container_port_name": "metrics",
            f"{M}pod_container_port_number": "9113",
            f"{M}pod_container_port_protocol": "TCP",
            f"{M}pod_container_init": "false",
        },
        {"__address__": "10.0.2.81:9113", f"{M}endpoint_port_name": "metrics", **not_ready},
        {
            "__address__": "10.0.1.57:80",
            f"{M}endpoint_port_name": "http",
            f"{M}endpoint_port_protocol": "TCP",
            f"{M}endpoint_ready": "true",
            **WEB_ENDPOINT_POD_TARGET,
            **NODE_META,
            f"{M}pod_container_name": "nginx",
            f"{M}pod_container_image": "nginx:1.25.4",
            f"{M}pod_container_port_name": "http",
            f"{M}pod_container_port_number": "80",
            f"{M}pod_container_port_protocol": "TCP",
            f"{M}pod_container_init": "false",
        },
        {"__address__": "10.0.2.81:80", f"{M}endpoint_port_name": "http", **not_ready},
        # spec §11 #4: the pod's 443 is not an endpoint port: pod labels, no endpoint labels
        {
            "__address__": "10.0.1.57:443",
            **WEB_POD,
            f"{M}pod_container_name": "nginx",
            f"{M}pod_container_image": "nginx:1.25.4",
            f"{M}pod_container_port_name": "https",
            f"{M}pod_container_port_number": "443",
            f"{M}pod_container_port_protocol": "TCP",
            f"{M}pod_container_init": "false",
        },
    ]


def test_endpoints_without_service_or_pods() -> None:
    """Without the Service and Pods in the stores only endpoint labels remain."""
    group = endpoints.endpoints_group(
        objects.endpoints_from_raw(raw("endpoints-web.json")), get_pod=_pods()
    )
    assert f"{M}service_name" not in group.labels
    assert len(group.targets) == 4
    assert all(f"{M}pod_name" not in t for t in group.targets)


def test_endpoints_protocol_is_endpoint_ports() -> None:
    """Container-port labels on an endpoint target carry the endpoint port's protocol."""
    eps = objects.endpoints_from_raw(
        {
            "metadata": {"name": "e", "namespace": "n"},
            "subsets": [
                {
                    "addresses": [
                        {
                            "ip": "fd00::2",
                            "hostname": "h0",
                            "targetRef": {"kind": "Pod", "name": "p"},
                        }
                    ],
                    "ports": [{"port": 53, "protocol": "UDP", "name": "dns"}],
                }
            ],
        }
    )
    pod = objects.pod_from_raw(
        {
            "metadata": {"name": "p", "namespace": "n"},
            "spec": {
                "containers": [
                    {"name": "c", "ports": [{"containerPort": 53, "protocol": "TCP"}]},
                ]
            },
            "status": {"podIP": "fd00::2"},
        }
    )
    (target,) = endpoints.endpoints_group(eps, get_pod=_pods(pod)).targets
    assert target["__address__"] == "[fd00::2]:53"
    assert target[f"{M}endpoint_hostname"] == "h0"
    assert target[f"{M}pod_container_port_protocol"] == "UDP"


def test_endpointslice_sample_joined() -> None:
    """EndpointSlice joined with Service and Pod; conditions, zone, extra pod port."""
    group = endpoints.endpointslice_group(
        objects.endpointslice_from_raw(raw("endpointslice-web.json")),
        service=objects.service_from_raw(raw("service-web.json")),
        get_pod=_pods(objects.pod_from_raw(raw("pod-web-running.json"))),
    )
    assert group.source == "endpointslice/shop/web-x7k2p"
    labels, targets = as_sets(group)
    assert labels == {
        **WEB_SERVICE,
        f"{M}endpointslice_address_type": "IPv4",
        f"{M}endpointslice_name": "web-x7k2p",
        f"{M}endpointslice_label_app_kubernetes_io_name": "web",
        f"{M}endpointslice_labelpresent_app_kubernetes_io_name": "true",
        f"{M}endpointslice_label_endpointslice_kubernetes_io_managed_by": "endpointslice-controller.k8s.io",  # noqa: E501
        f"{M}endpointslice_labelpresent_endpointslice_kubernetes_io_managed_by": "true",
        f"{M}endpointslice_label_kubernetes_io_service_name": "web",
        f"{M}endpointslice_labelpresent_kubernetes_io_service_name": "true",
        f"{M}endpointslice_annotation_endpoints_kubernetes_io_last_change_trigger_time": "2024-05-14T08:02:24Z",  # noqa: E501
        f"{M}endpointslice_annotationpresent_endpoints_kubernetes_io_last_change_trigger_time": "true",  # noqa: E501
    }
    ready = {
        f"{M}endpointslice_endpoint_conditions_ready": "true",
        f"{M}endpointslice_endpoint_conditions_serving": "true",
        f"{M}endpointslice_endpoint_conditions_terminating": "false",
        f"{M}endpointslice_address_target_kind": "Pod",
        f"{M}endpointslice_address_target_name": "web-7d4b9c8f6d-x2k9p",
        f"{M}endpointslice_endpoint_node_name": NODE_NAME,
        f"{M}endpointslice_endpoint_zone": "eu-west-1a",
        **WEB_POD,
    }
    not_ready = {
        f"{M}endpointslice_endpoint_conditions_ready": "false",
        f"{M}endpointslice_endpoint_conditions_serving": "false",
        f"{M}endpointslice_endpoint_conditions_terminating": "false",
        f"{M}endpointslice_address_target_kind": "Pod",
        f"{M}endpointslice_address_target_name": "web-7d4b9c8f6d-lm4tz",
        f"{M}endpointslice_endpoint_node_name": "ip-10-0-2-44.eu-west-1.compute.internal",
        f"{M}endpointslice_endpoint_zone": "eu-west-1b",
    }
    metrics_port = {
        f"{M}endpointslice_port_name": "metrics",
        f"{M}endpointslice_port_protocol": "TCP",
        f"{M}endpointslice_port": "9113",
    }
    http_port = {
        f"{M}endpointslice_port_name": "http",
        f"{M}endpointslice_port_protocol": "TCP",
        f"{M}endpointslice_port": "80",
    }
    assert targets == [
        {
            "__address__": "10.0.1.57:9113",
            **metrics_port,
            **ready,
            f"{M}pod_container_name": "exporter",
            f"{M}pod_container_image": "nginx/nginx-prometheus-exporter:1.1.0",
            f"{M}pod_container_port_name": "metrics",
            f"{M}pod_container_port_number": "9113",
            f"{M}pod_container_port_protocol": "TCP",
            f"{M}pod_container_init": "false",
        },
        {
            "__address__": "10.0.1.57:80",
            **http_port,
            **ready,
            f"{M}pod_container_name": "nginx",
            f"{M}pod_container_image": "nginx:1.25.4",
            f"{M}pod_container_port_name": "http",
            f"{M}pod_container_port_number": "80",
            f"{M}pod_container_port_protocol": "TCP",
            f"{M}pod_container_init": "false",
        },
        {"__address__": "10.0.2.81:9113", **metrics_port, **not_ready},
        {"__address__": "10.0.2.81:80", **http_port, **not_ready},
        {
            "__address__": "10.0.1.57:443",
            **WEB_POD,
            f"{M}pod_container_name": "nginx",
            f"{M}pod_container_image": "nginx:1.25.4",
            f"{M}pod_container_port_name": "https",
            f"{M}pod_container_port_number": "443",
            f"{M}pod_container_port_protocol": "TCP",
            f"{M}pod_container_init": "false",
        },
    ]


def test_endpointslice_dual_stack_other_family_has_no_targets() -> None:
    """A dual-stack Service's slice of its second IP family yields labels but no targets."""
    svc_raw = raw("service-web.json")
    svc_raw["spec"]["ipFamilyPolicy"] = "PreferDualStack"
    svc_raw["spec"]["ipFamilies"] = ["IPv6", "IPv4"]
    es = objects.endpointslice_from_raw(raw("endpointslice-web.json"))
    group = endpoints.endpointslice_group(
        es, service=objects.service_from_raw(svc_raw), get_pod=_pods()
    )
    assert group.targets == ()
    assert group.labels[f"{M}service_name"] == "web"
    svc_raw["spec"]["ipFamilies"] = ["IPv4", "IPv6"]
    same = endpoints.endpointslice_group(
        es, service=objects.service_from_raw(svc_raw), get_pod=_pods()
    )
    assert len(same.targets) == 4


def test_endpointslice_port_null_and_topology() -> None:
    """A slice port without a number gives the bare address; topology labels with presence."""
    es = objects.endpointslice_from_raw(
        {
            "metadata": {"name": "s", "namespace": "n"},
            "addressType": "IPv6",
            "endpoints": [
                {
                    "addresses": ["fd00::9"],
                    "hostname": "h",
                    "deprecatedTopology": {"topology.kubernetes.io/zone": "z1"},
                }
            ],
            "ports": [{"appProtocol": "http"}, {"port": 8080}],
        }
    )
    _labels, targets = as_sets(endpoints.endpointslice_group(es, get_pod=_pods()))
    topo = {
        f"{M}endpointslice_endpoint_hostname": "h",
        f"{M}endpointslice_endpoint_topology_topology_kubernetes_io_zone": "z1",
        f"{M}endpointslice_endpoint_topology_present_topology_kubernetes_io_zone": "true",
    }
    assert targets == [
        {"__address__": "fd00::9", f"{M}endpointslice_port_app_protocol": "http", **topo},
        {"__address__": "[fd00::9]:8080", f"{M}endpointslice_port": "8080", **topo},
    ]


def test_ingress_sample() -> None:
    """Ingress: one target per rule/path, https only for the TLS host, bare host address."""
    group = roles.ingress_group(objects.ingress_from_raw(raw("ingress-web.json")))
    assert group.source == "ingress/shop/web"
    labels, targets = as_sets(group)
    assert labels == {
        f"{M}namespace": "shop",
        f"{M}ingress_name": "web",
        f"{M}ingress_class_name": "nginx",
        f"{M}ingress_label_app_kubernetes_io_name": "web",
        f"{M}ingress_labelpresent_app_kubernetes_io_name": "true",
        f"{M}ingress_annotation_nginx_ingress_kubernetes_io_ssl_redirect": "true",
        f"{M}ingress_annotationpresent_nginx_ingress_kubernetes_io_ssl_redirect": "true",
    }

    def t(host: str, scheme: str, path: str) -> dict[str, str]:
        return {
            "__address__": host,
            f"{M}ingress_scheme": scheme,
            f"{M}ingress_host": host,
            f"{M}ingress_path": path,
        }

    assert targets == [
        t("shop.example.com", "https", "/"),
        t("admin.shop.example.com", "http", "/admin"),
        t("admin.shop.example.com", "http", "/status"),
    ]


@pytest.mark.parametrize(
    ("pattern", "host", "expected"),
    [
        ("shop.example.com", "shop.example.com", True),
        ("*.example.com", "shop.example.com", True),
        ("*.example.com", "a.shop.example.com", False),
        ("*.example.com", "example.com", False),
        ("*.shop.example.com", "admin.shop.example.com", True),
        ("x.example.com", "shop.example.com", False),
        ("*", "host", True),
        ("*.example.com", "", False),
    ],
)
def test_ingress_tls_wildcard(pattern: str, host: str, expected: bool) -> None:
    """TLS host match: exact, or a leading-``*`` label with the same label count and rest."""
    assert roles.matches_tls_host(pattern, host) is expected


def test_ingress_rule_without_http_and_host() -> None:
    """A rule without http gives path "/", an empty path is "/", no host means no address."""
    ing = objects.ingress_from_raw(
        {
            "metadata": {"name": "i", "namespace": "n"},
            "spec": {
                "tls": [{"hosts": ["*.example.com"]}],
                "rules": [
                    {"host": "a.example.com"},
                    {"http": {"paths": [{"path": "", "pathType": "Prefix", "backend": {}}]}},
                ],
            },
        }
    )
    _labels, targets = as_sets(roles.ingress_group(ing))
    assert targets == [
        {
            "__address__": "a.example.com",
            f"{M}ingress_scheme": "https",
            f"{M}ingress_host": "a.example.com",
            f"{M}ingress_path": "/",
        },
        {f"{M}ingress_scheme": "http", f"{M}ingress_path": "/"},
    ]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("app.kubernetes.io/name", "app_kubernetes_io_name"),
        ("a-b", "a_b"),
        ("9lives", "9lives"),
        ("ünï", "_n_"),
        ("Already_OK", "Already_OK"),
    ],
)
def test_sanitize(name: str, expected: str) -> None:
    """Sanitise maps every char outside [A-Za-z0-9_] to "_" and nothing else."""
    assert roles.sanitize(name) == expected


def test_slim_equality_ignores_unread_fields() -> None:
    """Two pods differing only in fields no role reads slim to equal values."""
    a = raw("pod-web-running.json")
    b = copy.deepcopy(a)
    b["metadata"]["resourceVersion"] = "1"
    b["status"]["conditions"][0]["lastTransitionTime"] = "2030-01-01T00:00:00Z"
    assert objects.pod_from_raw(a) == objects.pod_from_raw(b)
    b["status"]["phase"] = "Failed"
    assert objects.pod_from_raw(a) != objects.pod_from_raw(b)


def test_wire_lists_slim() -> None:
    """Every item of the real v1.20 list captures converts without error."""
    for name, conv in [
        ("podlist-shop.raw.json", objects.pod_from_raw),
        ("nodelist.raw.json", objects.node_from_raw),
        ("endpointslist-shop.raw.json", objects.endpoints_from_raw),
    ]:
        body: Mapping[str, Any] = json.loads((FIXTURES / "wire-v1.20" / name).read_text())
        assert body["items"]
        for item in body["items"]:
            conv(item)
