"""The Kubernetes manifests in deploy/: render every overlay with kustomize and check them.

Rendering uses ``kustomize build`` when a standalone kustomize is on PATH, else ``kubectl
kustomize`` (kustomize v4 or newer: the overlays use ``replicas``, ``replacements`` and a
``Component``). Every rendered object is validated against the Kubernetes OpenAPI schemas shipped
by the ``kubernetes-validate`` package, strictly (unknown fields are errors), for several
Kubernetes versions.

The agent configs inside the ConfigMap are checked too: the RBAC rules are derived from the
discovery roles they use, their Kubernetes selectors must be ones the API server accepts, and they
are loaded with the project's own loader (its environment expansion) and their relabel rules run
through the project's relabel engine (node-local filtering for the DaemonSet, hashmod sharding
for the StatefulSet).

Nothing is installed here: the test needs ``kubectl`` (or ``kustomize``) on PATH and the
``kubernetes-validate`` package.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from collector.config import Config, ScrapeConfig, load_config_text
from collector.model.relabel import compile_rules

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
OVERLAYS = ("daemonset", "statefulset", "cluster")
KINDS = {"daemonset": "DaemonSet", "statefulset": "StatefulSet", "cluster": "StatefulSet"}
PROXY_COMPONENT = "components/apiserver-proxy"
# Kubernetes versions whose schemas every object must satisfy (kubernetes-validate ships them).
K8S_VERSIONS = ("1.29.0", "1.31.0", "1.33.0")

Obj = dict[str, Any]

# Discovery role -> the (apiGroup, resource) pairs its informers list and watch (spec §2.5).
ROLE_RESOURCES: Mapping[str, frozenset[tuple[str, str]]] = {
    "pod": frozenset({("", "pods")}),
    "node": frozenset({("", "nodes")}),
    "service": frozenset({("", "services")}),
    "endpoints": frozenset({("", "endpoints"), ("", "services"), ("", "pods")}),
    "endpointslice": frozenset(
        {("discovery.k8s.io", "endpointslices"), ("", "services"), ("", "pods")}
    ),
    "ingress": frozenset({("networking.k8s.io", "ingresses")}),
}
# Allowed selector roles per discovery role (spec §2.1).
SELECTOR_ROLES: Mapping[str, frozenset[str]] = {
    "pod": frozenset({"pod", "node"}),
    "service": frozenset({"service"}),
    "endpoints": frozenset({"pod", "service", "endpoints"}),
    "endpointslice": frozenset({"pod", "service", "endpointslice"}),
    "node": frozenset({"node"}),
    "ingress": frozenset({"ingress"}),
}
# Field-selector keys each resource's API accepts (kubernetes-api.md B.6, as of v1.20).
FIELD_KEYS: Mapping[str, frozenset[str]] = {
    "pod": frozenset(
        {
            "metadata.name",
            "metadata.namespace",
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        }
    ),
    "node": frozenset({"metadata.name", "spec.unschedulable"}),
    "service": frozenset({"metadata.name", "metadata.namespace"}),
    "endpoints": frozenset({"metadata.name", "metadata.namespace"}),
    "endpointslice": frozenset({"metadata.name", "metadata.namespace"}),
    "ingress": frozenset({"metadata.name", "metadata.namespace"}),
}
# The scraping grant that is not discovery: direct kubelet /metrics and /metrics/cadvisor.
KUBELET_SCRAPE_RULES = frozenset({("", "nodes/metrics", "get")})
PROXY_RULES = frozenset({("", "nodes/proxy", "get"), ("", "pods/proxy", "get")})
DISCOVERY_VERBS = frozenset({"get", "list", "watch"})

ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


# --------------------------------------------------------------------------- rendering


@functools.cache
def _kustomize_command() -> tuple[str, ...]:
    standalone = shutil.which("kustomize")
    if standalone:
        return (standalone, "build")
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("neither kustomize nor kubectl is on PATH: tests/deploy renders with them")
    out = subprocess.run(
        [kubectl, "version", "--client"], capture_output=True, text=True, check=False
    ).stdout
    found = re.search(r"Kustomize Version: v(\d+)", out)
    if found is None or int(found.group(1)) < 4:
        pytest.fail(f"kubectl's kustomize is too old for deploy/ (need v4+): {out.strip()!r}")
    return (kubectl, "kustomize")


def _render_dir(path: Path) -> list[Obj]:
    proc = subprocess.run(
        [*_kustomize_command(), str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, f"kustomize {path} failed:\n{proc.stderr}"
    return [cast("Obj", doc) for doc in yaml.safe_load_all(proc.stdout) if doc]


@functools.cache
def render(overlay: str) -> tuple[Obj, ...]:
    """Render ``deploy/<overlay>``; ``overlay+proxy`` adds the API-server-proxy component."""
    if not overlay.endswith("+proxy"):
        return tuple(_render_dir(DEPLOY / overlay))
    base = overlay.removesuffix("+proxy")
    return tuple(_render_extra(f"resources: [{{d}}/{base}]\ncomponents: [{{d}}/{PROXY_COMPONENT}]"))


def _render_extra(body: str) -> list[Obj]:
    """Render a throw-away kustomization under deploy/ (kustomize refuses absolute paths)."""
    tmp = DEPLOY / f".test-{os.getpid()}"
    tmp.mkdir(exist_ok=True)
    try:
        (tmp / "kustomization.yaml").write_text(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
            + body.format(d="..")
            + "\n"
        )
        return _render_dir(tmp)
    finally:
        shutil.rmtree(tmp)


def objects(overlay: str, kind: str) -> list[Obj]:
    return [o for o in render(overlay) if o["kind"] == kind]


def one(overlay: str, kind: str, name: str | None = None) -> Obj:
    found = [o for o in objects(overlay, kind) if name is None or o["metadata"]["name"] == name]
    assert len(found) == 1, f"{overlay}: expected one {kind} {name or ''}, got {len(found)}"
    return found[0]


def workload(overlay: str) -> Obj:
    kind = KINDS[overlay]
    return one(overlay, kind, "collector")


def container(overlay: str) -> Obj:
    containers = workload(overlay)["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["collector"]
    return cast("Obj", containers[0])


def _config_volume(overlay: str) -> Obj:
    volumes = workload(overlay)["spec"]["template"]["spec"]["volumes"]
    (config,) = [v for v in volumes if v["name"] == "config"]
    return cast("Obj", config["configMap"])


def config_key(overlay: str) -> str:
    """The ConfigMap key the workload projects to /etc/collector/collector.yml."""
    (item,) = _config_volume(overlay)["items"]
    assert item["path"] == "collector.yml"
    return cast("str", item["key"])


def agent_config_text(overlay: str) -> str:
    cm = one(overlay, "ConfigMap", _config_volume(overlay)["name"])
    return cast("str", cm["data"][config_key(overlay)])


def agent_config(overlay: str, env: Mapping[str, str] | None = None) -> Obj:
    """The overlay's agent config; ``${VAR}`` expanded from ``env`` when given."""
    text = agent_config_text(overlay)
    if env is not None:
        text = ENV_REF.sub(lambda m: env[m.group(1)], text)
    return cast("Obj", yaml.safe_load(text))


def sd_configs(config: Obj) -> Iterator[tuple[str, Obj]]:
    for job in config["scrape_configs"]:
        for sd in job.get("kubernetes_sd_configs", []):
            yield job["job_name"], sd


def job(config: Obj, name: str) -> Obj:
    (found,) = [j for j in config["scrape_configs"] if j["job_name"] == name]
    return cast("Obj", found)


def load(overlay: str, env: Mapping[str, str]) -> Config:
    """The overlay's agent config through the project's own loader (its env expansion)."""
    return load_config_text(agent_config_text(overlay), base_dir=str(ROOT), env=env)


def loaded_job(config: Config, name: str) -> ScrapeConfig:
    (found,) = [j for j in config.scrape_configs if j.job_name == name]
    return found


def relabel(job_config: ScrapeConfig, labels: Mapping[str, str]) -> dict[str, str] | None:
    return compile_rules(job_config.relabel_configs).process(dict(labels))


def pod_env(overlay: str) -> dict[str, str]:
    """Environment names the agent container gets: explicit env and envFrom ConfigMaps."""
    spec = container(overlay)
    names = {e["name"]: e.get("value", "<from downward API>") for e in spec.get("env", [])}
    for source in spec.get("envFrom", []):
        cm = one(overlay, "ConfigMap", source["configMapRef"]["name"])
        names.update(cm["data"])
    return names


# --------------------------------------------------------------------------- rendering + schema


@pytest.mark.parametrize("overlay", [*OVERLAYS, "daemonset+proxy", "statefulset+proxy"])
def test_overlay_renders_expected_objects(overlay: str) -> None:
    kinds = sorted(f"{o['kind']}/{o['metadata']['name']}" for o in render(overlay))
    base = overlay.removesuffix("+proxy")
    for expected in (
        "Namespace/monitoring",
        "ServiceAccount/collector",
        "ClusterRole/collector",
        "ClusterRoleBinding/collector",
        "Service/collector",
    ):
        assert expected in kinds
    kind = KINDS[base]
    assert f"{kind}/collector" in kinds
    proxy = "ClusterRole/collector-apiserver-proxy" in kinds
    assert proxy == overlay.endswith("+proxy"), "the proxy RBAC is opt-in only"
    for obj in render(overlay):
        if obj["kind"] not in {"Namespace", "ClusterRole", "ClusterRoleBinding"}:
            assert obj["metadata"]["namespace"] == "monitoring", obj["metadata"]["name"]


@functools.cache
def _validator() -> Callable[..., str]:
    module = importlib.import_module("kubernetes_validate")
    return cast("Callable[..., str]", module.validate)


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("overlay", [*OVERLAYS, "daemonset+proxy"])
def test_every_object_validates_strictly(overlay: str, version: str) -> None:
    validate = _validator()
    errors = []
    for obj in render(overlay):
        try:
            validate(obj, version, strict=True)
        except Exception as err:  # kubernetes_validate.ValidationError and schema misses
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {err}")
    assert not errors, "\n".join(errors)


# --------------------------------------------------------------------------- RBAC


def _rule_set(role: Obj) -> set[tuple[str, str, str]]:
    out: set[tuple[str, str, str]] = set()
    for rule in role["rules"]:
        assert "nonResourceURLs" not in rule
        assert "resourceNames" not in rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    assert "*" not in (group, resource, verb), f"wildcard in {rule}"
                    out.add((group, resource, verb))
    return out


def _discovery_roles(overlay: str) -> set[str]:
    return {sd["role"] for _, sd in sd_configs(agent_config(overlay))}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_clusterrole_grants_exactly_what_discovery_and_kubelet_scraping_use(overlay: str) -> None:
    roles = _discovery_roles(overlay)
    assert roles, "the default config discovers something in Kubernetes"
    resources = set().union(*(ROLE_RESOURCES[r] for r in roles))
    expected = {(g, r, v) for g, r in resources for v in DISCOVERY_VERBS} | KUBELET_SCRAPE_RULES
    assert _rule_set(one(overlay, "ClusterRole", "collector")) == expected
    # No other grants at all in the default overlays (deploy/cluster: its pods' Role).
    assert [o["metadata"]["name"] for o in objects(overlay, "ClusterRole")] == ["collector"]
    namespaced = ["collector-cluster"] if overlay == "cluster" else []
    assert [o["metadata"]["name"] for o in objects(overlay, "Role")] == namespaced
    assert [o["metadata"]["name"] for o in objects(overlay, "RoleBinding")] == namespaced


def test_every_kubernetes_rule_verb_is_read_only_and_discovery_is_get_list_watch() -> None:
    role = one("daemonset", "ClusterRole", "collector")
    for rule in role["rules"]:
        subresource = any("/" in r for r in rule["resources"])
        assert set(rule["verbs"]) == ({"get"} if subresource else DISCOVERY_VERBS), rule


@pytest.mark.parametrize("overlay", ["daemonset+proxy", "statefulset+proxy"])
def test_optional_apiserver_proxy_role_is_separate_and_minimal(overlay: str) -> None:
    assert _rule_set(one(overlay, "ClusterRole", "collector-apiserver-proxy")) == PROXY_RULES
    binding = one(overlay, "ClusterRoleBinding", "collector-apiserver-proxy")
    assert binding["roleRef"]["name"] == "collector-apiserver-proxy"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "collector", "namespace": "monitoring"}
    ]
    # The base role is unchanged by the component.
    base = overlay.removesuffix("+proxy")
    assert _rule_set(one(overlay, "ClusterRole", "collector")) == _rule_set(
        one(base, "ClusterRole", "collector")
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_clusterrolebinding_binds_the_workloads_service_account(overlay: str) -> None:
    binding = one(overlay, "ClusterRoleBinding", "collector")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "collector",
    }
    sa = one(overlay, "ServiceAccount", "collector")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "collector", "namespace": sa["metadata"]["namespace"]}
    ]
    assert workload(overlay)["spec"]["template"]["spec"]["serviceAccountName"] == "collector"


# --------------------------------------------------------------------------- pod spec


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_security_context_is_restricted(overlay: str) -> None:
    pod = workload(overlay)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["fsGroup"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not pod.get("hostNetwork")
    assert not pod.get("hostPID")
    assert not pod.get("hostIPC")
    sc = container(overlay)["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["runAsUser"] == 65532
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert sc.get("privileged", False) is False


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_point_at_health_and_ready(overlay: str) -> None:
    spec = container(overlay)
    ports = {p["name"]: p["containerPort"] for p in spec["ports"]}
    assert ports == {"http-metrics": 9099}
    assert spec["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": "http-metrics"}
    assert spec["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": "http-metrics"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_resources_image_and_args(overlay: str) -> None:
    spec = container(overlay)
    assert spec["resources"] == {
        "requests": {"cpu": "100m", "memory": "128Mi"},
        "limits": {"cpu": "1", "memory": "512Mi"},
    }
    assert spec["image"] == "localhost/collector:dev"
    assert spec["imagePullPolicy"] == "IfNotPresent"
    assert "--config.file=/etc/collector/collector.yml" in spec["args"]
    assert "--storage.path=/var/lib/collector" in spec["args"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_volumes_disk_queue_tmp_and_config(overlay: str) -> None:
    obj = workload(overlay)
    mounts = {m["mountPath"]: m for m in container(overlay)["volumeMounts"]}
    assert set(mounts) == {"/etc/collector", "/var/lib/collector", "/tmp"}
    assert mounts["/etc/collector"]["readOnly"] is True
    volumes = {v["name"]: v for v in obj["spec"]["template"]["spec"]["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    data = mounts["/var/lib/collector"]["name"]
    if overlay == "daemonset":
        assert "emptyDir" in volumes[data]
    else:
        assert data not in volumes
        claims = [c["metadata"]["name"] for c in obj["spec"]["volumeClaimTemplates"]]
        assert claims == [data]
    assert config_key(overlay) == f"{overlay}.yml"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_downward_api_env(overlay: str) -> None:
    env = {e["name"]: e for e in container(overlay)["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    if overlay == "daemonset":
        assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_config_reference_is_in_the_pod_environment(overlay: str) -> None:
    referenced = set(ENV_REF.findall(agent_config_text(overlay)))
    assert referenced, "the config uses environment references"
    missing = referenced - set(pod_env(overlay))
    assert not missing, f"{overlay}: config references {missing} but the pod does not set them"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_service_selects_the_agent_pods_on_9099(overlay: str) -> None:
    svc = one(overlay, "Service", "collector")
    labels = workload(overlay)["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= labels.items()
    assert workload(overlay)["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert svc["spec"]["ports"] == [
        {"name": "http-metrics", "port": 9099, "targetPort": "http-metrics", "protocol": "TCP"}
    ]


# --------------------------------------------------------------------------- agent configs


@pytest.mark.parametrize("overlay", ["daemonset", "statefulset"])  # deploy/cluster: one copy
def test_config_copies_in_config_dir_are_identical(overlay: str) -> None:
    copy = ROOT / "config" / f"kubernetes-{overlay}.yml"
    source = DEPLOY / "base" / "config" / f"{overlay}.yml"
    assert copy.read_text() == source.read_text() == agent_config_text(overlay)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kubernetes_selectors_are_valid_for_role_and_api(overlay: str) -> None:
    for job_name, sd in sd_configs(agent_config(overlay)):
        assert sd["role"] in ROLE_RESOURCES, job_name
        seen = set()
        for selector in sd.get("selectors", []):
            role = selector["role"]
            assert role in SELECTOR_ROLES[sd["role"]], f"{job_name}: {role} selector"
            assert role not in seen, f"{job_name}: duplicated selector role {role}"
            seen.add(role)
            for term in filter(None, selector.get("field", "").split(",")):
                key = re.split(r"!=|==|=", term, maxsplit=1)[0]
                assert key in FIELD_KEYS[role], f"{job_name}: field {key!r} on {role}s"


def test_daemonset_discovers_only_its_own_node() -> None:
    config = agent_config("daemonset")
    by_role: dict[str, set[str]] = {}
    for _, sd in sd_configs(config):
        fields = {s["role"]: s.get("field") for s in sd.get("selectors", [])}
        if sd["role"] == "node":
            assert fields == {"node": "metadata.name=${NODE_NAME}"}
        else:
            assert fields.get("pod") == "spec.nodeName=${NODE_NAME}", sd
        by_role.setdefault(sd["role"], set())
    assert set(by_role) == {"node", "pod", "endpointslice"}


def test_statefulset_discovers_cluster_wide() -> None:
    for job_name, sd in sd_configs(agent_config("statefulset")):
        assert not sd.get("selectors"), job_name
        assert not sd.get("namespaces"), job_name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_default_jobs_and_remote_write_url_from_environment(overlay: str) -> None:
    config = agent_config(overlay)
    names = [j["job_name"] for j in config["scrape_configs"]]
    assert names == [
        "collector",
        "kubelet",
        "cadvisor",
        "kubernetes-pods",
        "kubernetes-service-endpoints",
    ]
    assert config["remote_write"] == [{"name": "default", "url": "${REMOTE_WRITE_URL}"}]
    for name in ("kubelet", "cadvisor"):
        kubelet = job(config, name)
        assert kubelet["scheme"] == "https"
        sa = "/var/run/secrets/kubernetes.io/serviceaccount"
        assert kubelet["authorization"] == {"credentials_file": f"{sa}/token"}
        assert kubelet["tls_config"]["ca_file"] == f"{sa}/ca.crt"
    assert job(config, "cadvisor")["metrics_path"] == "/metrics/cadvisor"


def test_remote_write_url_is_set_in_exactly_one_place() -> None:
    hits = [
        path.relative_to(ROOT)
        for path in DEPLOY.rglob("*")
        if path.suffix in {".yaml", ".yml"} and "REMOTE_WRITE_URL=" in path.read_text()
    ]
    assert hits == [Path("deploy/base/kustomization.yaml")]
    assert pod_env("daemonset")["REMOTE_WRITE_URL"].startswith("http")


# --------------------------------------------------------------------------- relabel behaviour

_DS_ENV = {
    "NODE_NAME": "node-a",
    "POD_NAME": "collector-x7k2p",
    "REMOTE_WRITE_URL": "http://rw",
    "CLUSTER_NAME": "c",
}


def test_daemonset_config_loads_with_node_local_selectors() -> None:
    config = load("daemonset", _DS_ENV)
    fields = {
        (j.job_name, sel.role): sel.field
        for j in config.scrape_configs
        for sd in j.kubernetes_sd_configs
        for sel in sd.selectors
    }
    assert fields == {
        ("kubelet", "node"): "metadata.name=node-a",
        ("cadvisor", "node"): "metadata.name=node-a",
        ("kubernetes-pods", "pod"): "spec.nodeName=node-a",
        ("kubernetes-service-endpoints", "pod"): "spec.nodeName=node-a",
    }
    (rw,) = config.remote_write
    assert rw.url == "http://rw"


def _pod_target(address: str, ip: str, **annotations: str) -> dict[str, str]:
    labels = {
        "__address__": address,
        "__scheme__": "http",
        "__metrics_path__": "/metrics",
        "__meta_kubernetes_namespace": "shop",
        "__meta_kubernetes_pod_name": "web-1",
        "__meta_kubernetes_pod_ip": ip,
        "__meta_kubernetes_pod_phase": "Running",
        "__meta_kubernetes_pod_node_name": "node-a",
    }
    for key, value in annotations.items():
        labels[f"__meta_kubernetes_pod_annotation_prometheus_io_{key}"] = value
    return labels


def test_pod_annotations_set_port_path_and_scheme() -> None:
    pods = loaded_job(load("daemonset", _DS_ENV), "kubernetes-pods")
    assert relabel(pods, _pod_target("10.0.1.57:80", "10.0.1.57")) is None  # not annotated
    got = relabel(
        pods,
        _pod_target(
            "10.0.1.57:80", "10.0.1.57", scrape="true", port="9113", path="/m", scheme="https"
        ),
    )
    assert got is not None
    assert (got["__address__"], got["__metrics_path__"], got["__scheme__"]) == (
        "10.0.1.57:9113",
        "/m",
        "https",
    )
    assert (got["namespace"], got["pod"], got["node"]) == ("shop", "web-1", "node-a")
    v6 = relabel(pods, _pod_target("[fd00::5]:80", "fd00::5", scrape="true", port="9113"))
    assert v6 is not None
    assert v6["__address__"] == "[fd00::5]:9113"
    plain = relabel(pods, _pod_target("10.0.1.57:80", "10.0.1.57", scrape="true"))
    assert plain is not None
    assert (plain["__address__"], plain["__metrics_path__"], plain["__scheme__"]) == (
        "10.0.1.57:80",
        "/metrics",
        "http",
    )


def _endpoint_target(address: str, node: str, **annotations: str) -> dict[str, str]:
    labels = {
        "__address__": address,
        "__meta_kubernetes_namespace": "shop",
        "__meta_kubernetes_service_name": "web",
        "__meta_kubernetes_endpointslice_endpoint_node_name": node,
    }
    for key, value in annotations.items():
        labels[f"__meta_kubernetes_service_annotation_prometheus_io_{key}"] = value
    return labels


def test_daemonset_keeps_only_service_endpoints_on_its_node() -> None:
    endpoints = loaded_job(load("daemonset", _DS_ENV), "kubernetes-service-endpoints")
    mine = relabel(
        endpoints, _endpoint_target("10.0.1.57:80", "node-a", scrape="true", port="9113")
    )
    assert mine is not None
    assert mine["__address__"] == "10.0.1.57:9113"
    assert relabel(endpoints, _endpoint_target("10.0.2.9:80", "node-b", scrape="true")) is None
    assert relabel(endpoints, _endpoint_target("10.0.1.57:80", "node-a")) is None
    v6 = relabel(endpoints, _endpoint_target("[fd00::5]:80", "node-a", scrape="true", port="9113"))
    assert v6 is not None
    assert v6["__address__"] == "[fd00::5]:9113"


def _hashmod(value: str, modulus: int) -> int:
    """Spec §5.2: big-endian uint64 of md5 bytes 8..16, modulo."""
    return int.from_bytes(hashlib.md5(value.encode()).digest()[8:], "big") % modulus


@pytest.mark.parametrize("shards", [1, 2, 3, 5])
def test_statefulset_replicas_partition_targets_by_hashmod(shards: int) -> None:
    addresses = [f"10.0.{i // 250}.{i % 250}:{9100 + i % 3}" for i in range(300)]
    configs = [
        load(
            "statefulset",
            {
                "POD_NAME": f"collector-{ordinal}",
                "SHARDS": str(shards),
                "REMOTE_WRITE_URL": "http://rw",
                "CLUSTER_NAME": "c",
            },
        )
        for ordinal in range(shards)
    ]
    for name in ("kubelet", "cadvisor", "kubernetes-pods", "kubernetes-service-endpoints"):
        owners: dict[str, list[int]] = {a: [] for a in addresses}
        for ordinal, config in enumerate(configs):
            for address in addresses:
                labels = {
                    "__address__": address,
                    "__meta_kubernetes_node_name": "n",
                    "__meta_kubernetes_pod_annotation_prometheus_io_scrape": "true",
                    "__meta_kubernetes_pod_phase": "Running",
                    "__meta_kubernetes_service_annotation_prometheus_io_scrape": "true",
                }
                if relabel(loaded_job(config, name), labels) is not None:
                    owners[address].append(ordinal)
        for address, kept_by in owners.items():
            assert kept_by == [_hashmod(address, shards)], f"{name} {address}: {kept_by}"
        if shards > 1:
            assert len({o[0] for o in owners.values()}) == shards, "every replica gets a share"


def test_statefulset_shards_follow_replicas_from_one_place() -> None:
    spec = workload("statefulset")["spec"]
    env = {e["name"]: e.get("value") for e in container("statefulset")["env"]}
    assert env["SHARDS"] == str(spec["replicas"])


def test_own_overlay_changing_replicas_moves_the_modulus_with_the_documented_block() -> None:
    # kustomize runs an overlay's own `replicas:` after the transformers of what it includes,
    # so an overlay on top of deploy/statefulset that changes the count repeats the
    # `replacements:` block (deploy/README.md says so); this is that recipe.
    kustomization = yaml.safe_load((DEPLOY / "statefulset" / "kustomization.yaml").read_text())
    block = yaml.safe_dump({"replacements": kustomization["replacements"]})
    rendered = _render_extra(
        "resources: [{d}/statefulset]\nreplicas:\n  - name: collector\n    count: 5\n"
        + block.replace("{", "{{").replace("}", "}}")
    )
    (sts,) = [o for o in rendered if o["kind"] == "StatefulSet"]
    (ctr,) = sts["spec"]["template"]["spec"]["containers"]
    assert sts["spec"]["replicas"] == 5
    assert {e["name"]: e.get("value") for e in ctr["env"]}["SHARDS"] == "5"


# --------------------------------------------------------------------------- deploy/cluster

_CLUSTER_ENV = {"POD_NAME": "collector-1", "REMOTE_WRITE_URL": "http://rw", "CLUSTER_NAME": "c"}


def _selector(text: str) -> dict[str, str]:
    """An equality-based label selector (``a=b,c=d``) as a dict."""
    return dict(term.split("=", 1) for term in text.split(","))


def test_cluster_replicas_shard_through_their_own_ready_pods() -> None:
    """The args parse with the agent's own flags into Kubernetes membership whose selector is
    exactly this StatefulSet's pods: not the DaemonSet's, which share app.kubernetes.io/name."""
    from collector.cli import build_parser
    from collector.cluster.settings import resolve_settings, with_cluster_flags
    from collector.config import AgentOptions

    sts = workload("cluster")
    spec = container("cluster")
    env = {e["name"]: e for e in spec["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    namespace = sts["metadata"]["namespace"]
    options = with_cluster_flags(AgentOptions(), build_parser().parse_args(spec["args"]))
    settings = resolve_settings(options, {"POD_NAME": "collector-0", "POD_NAMESPACE": namespace})
    assert settings is not None
    assert (settings.peers_from, settings.self_name, settings.namespace) == (
        "kubernetes",
        "collector-0",
        "monitoring",
    )
    selector = _selector(settings.selector)
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()
    assert sts["spec"]["selector"]["matchLabels"] == selector
    ds_labels = workload("daemonset")["spec"]["template"]["metadata"]["labels"]
    assert not selector.items() <= ds_labels.items()
    assert sts["spec"]["replicas"] == 3
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    headless = one("cluster", "Service", sts["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["selector"] == selector


def test_cluster_leave_delay_covers_detection_and_hand_off_within_the_grace_period() -> None:
    """At SIGTERM a replica fails readiness and keeps scraping for --cluster.leave-delay: long
    enough for the peers to see it (probe period x failures) plus one scrape interval (the
    hand-off overlap), and short enough to leave the 10 s remote flush inside the grace."""
    from collector.cli import build_parser
    from collector.cluster.settings import with_cluster_flags
    from collector.config import AgentOptions

    spec = container("cluster")
    options = with_cluster_flags(AgentOptions(), build_parser().parse_args(spec["args"]))
    probe = spec["readinessProbe"]
    detection = probe["periodSeconds"] * probe["failureThreshold"]
    interval = load("cluster", _CLUSTER_ENV).global_config.scrape_interval
    assert options.cluster_leave_delay >= detection + interval
    grace = workload("cluster")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert options.cluster_leave_delay + options.flush_deadline < grace


def test_cluster_role_reads_only_its_namespaces_pods() -> None:
    """get/list/watch on pods, namespaced, bound to the workload's service account."""
    role = one("cluster", "Role", "collector-cluster")
    assert _rule_set(role) == {("", "pods", verb) for verb in DISCOVERY_VERBS}
    assert role["metadata"]["namespace"] == workload("cluster")["metadata"]["namespace"]
    binding = one("cluster", "RoleBinding", "collector-cluster")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "collector-cluster",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "collector", "namespace": "monitoring"}
    ]


def test_cluster_disruption_budget_takes_one_replica_at_a_time() -> None:
    """The PodDisruptionBudget covers exactly the StatefulSet's pods, one unavailable."""
    pdb = one("cluster", "PodDisruptionBudget", "collector")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"] == {
        "maxUnavailable": 1,
        "selector": {"matchLabels": workload("cluster")["spec"]["selector"]["matchLabels"]},
    }


def test_cluster_config_is_the_statefulset_config_without_hashmod() -> None:
    """Same jobs and rules as deploy/statefulset minus its three sharding rules per job; the
    agent's self-scrape opts out of sharding with __cluster_local__."""
    from collector.model.rendezvous import LOCAL_LABEL

    cluster = load("cluster", _CLUSTER_ENV)
    sts = load("statefulset", {**_CLUSTER_ENV, "SHARDS": "3"})
    assert [j.job_name for j in cluster.scrape_configs] == [j.job_name for j in sts.scrape_configs]
    for ours, theirs in zip(cluster.scrape_configs, sts.scrape_configs, strict=True):
        assert not any(r.action in ("hashmod", "keepequal") for r in ours.relabel_configs)
        if ours.job_name == "collector":
            continue
        assert ours.relabel_configs == theirs.relabel_configs[:-3], ours.job_name
        assert ours.kubernetes_sd_configs == theirs.kubernetes_sd_configs
    own = relabel(
        loaded_job(cluster, "collector"), {"__address__": "localhost:9099", "instance": "c-1"}
    )
    assert own is not None
    assert own[LOCAL_LABEL] == "true"
    pods = loaded_job(cluster, "kubernetes-pods")
    sharded = relabel(pods, _pod_target("10.0.1.57:80", "10.0.1.57", scrape="true"))
    assert sharded is not None
    assert LOCAL_LABEL not in sharded


def test_cluster_config_gives_every_target_to_exactly_one_replica() -> None:
    """300 annotated pods through the loaded config's relabeling and the agent's sharder:
    each target lands on one of 3 replicas, and the self-scrape on every replica."""
    from collector.model.rendezvous import Ring, Sharder
    from collector.model.targetgroup import TargetGroup
    from collector.scrape.target import targets_from_group

    config = load("cluster", _CLUSTER_ENV)
    groups = [
        TargetGroup(
            source=f"pod/shop/web-{i}",
            targets=(
                _pod_target(f"10.0.{i // 250}.{i % 250}:80", f"10.0.{i // 250}.{i % 250}")
                | {"__meta_kubernetes_pod_annotation_prometheus_io_scrape": "true"},
            ),
        )
        for i in range(300)
    ]
    replicas = [f"collector-{i}" for i in range(3)]
    owned: dict[str, list[str]] = {}
    for name in ("kubernetes-pods", "collector"):
        cfg = loaded_job(config, name)
        job_groups = groups if name == "kubernetes-pods" else _static_groups(cfg)
        built = targets_from_group(
            job_groups, cfg=cfg, relabeler=compile_rules(cfg.relabel_configs)
        )
        items = [(fp, t.scrape_pool, t.labels) for fp, t in built.active.items()]
        for replica in replicas:
            split = Sharder().split(Ring(replicas, self_name=replica), items)
            for fp in split.own:
                owned.setdefault(built.active[fp].url, []).append(replica)
    self_scrape = owned.pop("http://localhost:9099/metrics")
    assert self_scrape == replicas
    assert len(owned) == 300
    assert all(len(by) == 1 for by in owned.values())
    assert {by[0] for by in owned.values()} == set(replicas)


def _static_groups(cfg: ScrapeConfig) -> list[Any]:
    from collector.model.targetgroup import TargetGroup

    return [
        TargetGroup(
            source=str(i),
            targets=tuple({"__address__": t} for t in sc.targets),
            labels=dict(sc.labels),
        )
        for i, sc in enumerate(cfg.static_configs)
    ]
