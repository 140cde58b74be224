"""Benchmark: target relabeling of a typical Kubernetes pod target.

Target relabeling runs for every discovered target on every discovery update, so a cluster with
thousands of pods re-runs this chain constantly. The chain below is the usual
``kubernetes-pods`` job (annotation-driven keep, scheme/path/port from annotations, labelmap of
pod labels, namespace/pod/container labels) over ~40 ``__meta_kubernetes_*`` labels.

Run: ``python -m benchmarks.relabel [--seconds 2]``; prints targets per second.
"""

from __future__ import annotations

import argparse
import time

import yaml

from collector.model.relabel import Relabeler, compile_rules, parse_rule

RULES_YAML = r"""
- source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_scrape]
  action: keep
  regex: "true"
- source_labels: [__meta_kubernetes_pod_phase]
  regex: Succeeded|Failed
  action: drop
- source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_scheme]
  action: replace
  regex: (https?)
  target_label: __scheme__
- source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_path]
  action: replace
  target_label: __metrics_path__
  regex: (.+)
- source_labels: [__address__, __meta_kubernetes_pod_annotation_prometheus_io_port]
  action: replace
  regex: ([^:]+)(?::\d+)?;(\d+)
  replacement: $1:$2
  target_label: __address__
- action: labelmap
  regex: __meta_kubernetes_pod_label_(.+)
- source_labels: [__meta_kubernetes_namespace]
  action: replace
  target_label: namespace
- source_labels: [__meta_kubernetes_pod_name]
  action: replace
  target_label: pod
- source_labels: [__meta_kubernetes_pod_container_name]
  action: replace
  target_label: container
- source_labels: [__meta_kubernetes_pod_node_name]
  action: replace
  target_label: node
"""


def pod_target(index: int) -> dict[str, str]:
    """A discovered pod target with 40 labels, as Kubernetes SD would produce it."""
    labels = {
        "__address__": f"10.1.{index // 250}.{index % 250}:8080",
        "__scheme__": "http",
        "__metrics_path__": "/metrics",
        "__scrape_interval__": "30s",
        "__scrape_timeout__": "10s",
        "job": "kubernetes-pods",
        "__meta_kubernetes_namespace": "team-a",
        "__meta_kubernetes_pod_name": f"api-7d9f8b-{index:05d}",
        "__meta_kubernetes_pod_ip": f"10.1.{index // 250}.{index % 250}",
        "__meta_kubernetes_pod_uid": f"4c586419-7f6c-448d-aeec-{index:012d}",
        "__meta_kubernetes_pod_node_name": f"node-{index % 40}",
        "__meta_kubernetes_pod_host_ip": f"10.0.0.{index % 40}",
        "__meta_kubernetes_pod_phase": "Running",
        "__meta_kubernetes_pod_ready": "true",
        "__meta_kubernetes_pod_controller_kind": "ReplicaSet",
        "__meta_kubernetes_pod_controller_name": "api-7d9f8b",
        "__meta_kubernetes_pod_container_name": "api",
        "__meta_kubernetes_pod_container_id": f"containerd://{index:064x}",
        "__meta_kubernetes_pod_container_image": "registry.example/api:1.2.3",
        "__meta_kubernetes_pod_container_init": "false",
        "__meta_kubernetes_pod_container_port_name": "http-metrics",
        "__meta_kubernetes_pod_container_port_number": "8080",
        "__meta_kubernetes_pod_container_port_protocol": "TCP",
        "__meta_kubernetes_pod_annotation_prometheus_io_scrape": "true",
        "__meta_kubernetes_pod_annotationpresent_prometheus_io_scrape": "true",
        "__meta_kubernetes_pod_annotation_prometheus_io_port": "9102",
        "__meta_kubernetes_pod_annotationpresent_prometheus_io_port": "true",
        "__meta_kubernetes_pod_annotation_prometheus_io_path": "/custom/metrics",
        "__meta_kubernetes_pod_annotationpresent_prometheus_io_path": "true",
        "__meta_kubernetes_pod_annotation_kubectl_kubernetes_io_restartedAt": "2024-01-01",
        "__meta_kubernetes_pod_annotationpresent_kubectl_kubernetes_io_restartedAt": "true",
        "__meta_kubernetes_pod_label_app": "api",
        "__meta_kubernetes_pod_labelpresent_app": "true",
        "__meta_kubernetes_pod_label_app_kubernetes_io_name": "api",
        "__meta_kubernetes_pod_labelpresent_app_kubernetes_io_name": "true",
        "__meta_kubernetes_pod_label_pod_template_hash": "7d9f8b",
        "__meta_kubernetes_pod_labelpresent_pod_template_hash": "true",
        "__meta_kubernetes_pod_label_version": "1.2.3",
        "__meta_kubernetes_pod_labelpresent_version": "true",
        "__meta_kubernetes_pod_label_team": "a",
    }
    return labels


def build() -> Relabeler:
    """Parse and compile the job's relabel chain, as config loading does."""
    data = yaml.safe_load(RULES_YAML)
    return compile_rules([parse_rule(item, context="target") for item in data])


def bench(relabeler: Relabeler, targets: list[dict[str, str]], *, seconds: float) -> float:
    """Relabel fresh copies of ``targets`` for about ``seconds``; return targets per second."""
    process = relabeler.process
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for labels in targets:
            process(labels.copy())
        done += len(targets)
    return done / (time.perf_counter() - start)


def main() -> None:
    """Print the throughput of the pod chain; a sanity check guards against a silent no-op."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()

    relabeler = build()
    targets = [pod_target(i) for i in range(1000)]
    sample = relabeler.process(targets[0].copy())
    assert sample is not None
    assert sample["__address__"] == "10.1.0.0:9102"
    assert sample["app_kubernetes_io_name"] == "api"
    assert sample["pod"] == "api-7d9f8b-00000"

    copy_only = bench(Relabeler([], []), targets, seconds=min(args.seconds, 0.5))
    rate = bench(relabeler, targets, seconds=args.seconds)
    print(f"rules: {len(relabeler)}, labels per target: {len(targets[0])}")
    print(f"relabel: {rate:,.0f} targets/s ({1e6 / rate:.2f} µs/target)")
    print(f"baseline (dict copy only): {copy_only:,.0f} targets/s")


if __name__ == "__main__":
    main()
