"""The ``--cluster.*`` flags, resolved and checked: which peer source, who this member is.

Place in the pipeline: read once by the agent (and the CLI, to refuse bad flags before
starting) to build `collector.cluster.membership.Membership`.

Sources (``--cluster.peers-from``): ``static`` (``--cluster.peers=a,b,c``; implied by that flag),
``file`` (``--cluster.peers-file``: one name per line, re-read when it changes; implied too) and
``kubernetes`` (the ready pods of the agent's own workload: ``POD_NAMESPACE`` and
``--cluster.peers-selector``). This member's name is ``--cluster.self``, else ``POD_NAME``
(Downward API), else the host name, which Kubernetes sets to the pod name.
"""

from __future__ import annotations

import argparse
import dataclasses
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from collector.config import AgentOptions
from collector.errors import ConfigError
from collector.model.duration import parse_duration

__all__ = [
    "ClusterSettings",
    "PeersFrom",
    "add_cluster_flags",
    "resolve_settings",
    "with_cluster_flags",
]

PeersFrom = Literal["static", "file", "kubernetes"]

_SOURCES: dict[str, PeersFrom] = {"static": "static", "file": "file", "kubernetes": "kubernetes"}


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterSettings:
    """Resolved cluster flags: the agent shards its targets when it has these."""

    peers_from: PeersFrom
    self_name: str
    """This member's name as the peer source lists it (a pod name in Kubernetes)."""
    peers: tuple[str, ...] = ()
    """``static``: every member, this one included."""
    peers_file: str = ""
    """``file``: the path of the member list."""
    peers_file_refresh: float = 5.0
    """``file``: how often the file is checked for changes, seconds."""
    namespace: str = ""
    """``kubernetes``: the namespace of the agent's pods (``POD_NAMESPACE``)."""
    selector: str = ""
    """``kubernetes``: label selector of the agent's pods."""
    kubeconfig: str = ""
    """``kubernetes``: ``--kubeconfig``; empty = in-cluster."""
    replication: int = 1
    """Members that scrape each target (``--cluster.replication-factor``)."""
    handoff_overlap: float | None = None
    """Seconds a member keeps scraping a target it lost (None: one scrape interval)."""
    leave_delay: float = 0.0
    """Seconds between SIGTERM and the ordered stop, spent not ready (leaving)."""


def resolve_settings(options: AgentOptions, environ: Mapping[str, str]) -> ClusterSettings | None:
    """The cluster settings of ``options``, or None when the agent does not shard.

    Raises `ConfigError` naming the flag for contradictory or incomplete flags.
    """
    flag = options.cluster_peers_from
    if not flag:
        if options.cluster_peers and options.cluster_peers_file:
            raise ConfigError("--cluster.peers and --cluster.peers-file exclude each other")
        flag = "static" if options.cluster_peers else "file" if options.cluster_peers_file else ""
    if not flag:
        for flag, set_ in (
            ("--cluster.self", bool(options.cluster_self)),
            ("--cluster.replication-factor", options.cluster_replication_factor != 1),
            ("--cluster.handoff-overlap", options.cluster_handoff_overlap is not None),
            ("--cluster.leave-delay", options.cluster_leave_delay != 0),
        ):
            if set_:
                raise ConfigError(
                    f"{flag} needs a peer source: --cluster.peers, --cluster.peers-file or "
                    "--cluster.peers-from=kubernetes"
                )
        return None
    peers_from = _SOURCES.get(flag)
    if peers_from is None:
        raise ConfigError(f"--cluster.peers-from={flag!r}: expected one of {', '.join(_SOURCES)}")
    if options.cluster_replication_factor < 1:
        raise ConfigError(
            f"--cluster.replication-factor={options.cluster_replication_factor}: must be at least 1"
        )
    overlap = options.cluster_handoff_overlap
    if overlap is not None and overlap < 0:
        raise ConfigError("--cluster.handoff-overlap must not be negative")
    if options.cluster_leave_delay < 0:
        raise ConfigError("--cluster.leave-delay must not be negative")
    self_name = options.cluster_self or environ.get("POD_NAME", "") or socket.gethostname()
    peers: tuple[str, ...] = ()
    namespace = ""
    if peers_from == "static":
        peers = tuple(dict.fromkeys(p for p in options.cluster_peers if p))
        if not peers:
            raise ConfigError("--cluster.peers-from=static needs --cluster.peers=a,b,c")
        if self_name not in peers:
            # Static peers never change, so this member would scrape nothing, ever.
            raise ConfigError(
                f"--cluster.self={self_name!r} is not one of --cluster.peers={','.join(peers)}"
            )
    elif peers_from == "file":
        if not options.cluster_peers_file:
            raise ConfigError("--cluster.peers-from=file needs --cluster.peers-file=PATH")
    else:
        namespace = options.cluster_peers_namespace or environ.get("POD_NAMESPACE", "")
        if not namespace:
            raise ConfigError(
                "--cluster.peers-from=kubernetes needs the pods' namespace: set POD_NAMESPACE "
                "(Downward API metadata.namespace) or --cluster.peers-namespace"
            )
        if not options.cluster_peers_selector:
            raise ConfigError(
                "--cluster.peers-from=kubernetes needs --cluster.peers-selector "
                "(the agent pods' labels, e.g. app.kubernetes.io/name=collector)"
            )
    return ClusterSettings(
        peers_from=peers_from,
        self_name=self_name,
        peers=peers,
        peers_file=options.cluster_peers_file if peers_from == "file" else "",
        peers_file_refresh=options.cluster_peers_file_refresh,
        namespace=namespace,
        selector=options.cluster_peers_selector if peers_from == "kubernetes" else "",
        kubeconfig=options.kubeconfig,
        replication=options.cluster_replication_factor,
        handoff_overlap=overlap,
        leave_delay=options.cluster_leave_delay,
    )


# ------------------------------------------------------------------------------ flags


def add_cluster_flags(parser: argparse.ArgumentParser, defaults: AgentOptions) -> None:
    """``--cluster.*``: shard the targets across replicas (`collector.cluster`)."""
    group = parser.add_argument_group(
        "cluster", "shard targets across agent replicas (rendezvous hashing after relabeling)"
    )
    group.add_argument(
        "--cluster.peers-from",
        dest="cluster_peers_from",
        default=defaults.cluster_peers_from,
        choices=("", "kubernetes", "static", "file"),
        metavar="{kubernetes,static,file}",
        help="where the member list comes from: kubernetes = the ready pods of "
        "--cluster.peers-selector in $POD_NAMESPACE; static and file are implied by "
        "--cluster.peers and --cluster.peers-file (default: no sharding)",
    )
    group.add_argument(
        "--cluster.peers",
        dest="cluster_peers",
        default=",".join(defaults.cluster_peers),
        metavar="A,B,C",
        help="every member's name, this one's included (a fixed list)",
    )
    group.add_argument(
        "--cluster.peers-file",
        dest="cluster_peers_file",
        default=defaults.cluster_peers_file,
        metavar="FILE",
        help="the member list in a file (one per line), re-read when it changes",
    )
    group.add_argument(
        "--cluster.peers-file-refresh",
        dest="cluster_peers_file_refresh",
        default=defaults.cluster_peers_file_refresh,
        type=_duration,
        metavar="DURATION",
        help="how often --cluster.peers-file is checked (default: 5s)",
    )
    group.add_argument(
        "--cluster.self",
        dest="cluster_self",
        default=defaults.cluster_self,
        metavar="NAME",
        help="this member's name in the list (default: $POD_NAME, else the host name)",
    )
    group.add_argument(
        "--cluster.peers-selector",
        dest="cluster_peers_selector",
        default=defaults.cluster_peers_selector,
        metavar="SELECTOR",
        help="label selector of the agent's own pods (default: %(default)s)",
    )
    group.add_argument(
        "--cluster.peers-namespace",
        dest="cluster_peers_namespace",
        default=defaults.cluster_peers_namespace,
        metavar="NAMESPACE",
        help="namespace of the agent's own pods (default: $POD_NAMESPACE)",
    )
    group.add_argument(
        "--cluster.replication-factor",
        dest="cluster_replication_factor",
        default=defaults.cluster_replication_factor,
        type=int,
        metavar="R",
        help="members that scrape each target (default: %(default)s)",
    )
    group.add_argument(
        "--cluster.handoff-overlap",
        dest="cluster_handoff_overlap",
        default=defaults.cluster_handoff_overlap,
        type=_duration,
        metavar="DURATION",
        help="how long a member keeps scraping a target another member took over, before "
        "it stops without staleness markers (default: the target's scrape interval)",
    )
    group.add_argument(
        "--cluster.leave-delay",
        dest="cluster_leave_delay",
        default=defaults.cluster_leave_delay,
        type=_duration,
        metavar="DURATION",
        help="at SIGTERM, first leave the cluster: answer /-/ready with 503 (Kubernetes peers "
        "take over this member's targets) and keep scraping for this long, then stop; set it "
        "above readiness-probe detection plus the hand-off overlap (default: 0s, stop at once)",
    )


def with_cluster_flags(options: AgentOptions, args: argparse.Namespace) -> AgentOptions:
    """``options`` with the ``--cluster.*`` flags parsed by `add_cluster_flags`."""
    return dataclasses.replace(
        options,
        cluster_peers_from=args.cluster_peers_from,
        cluster_peers=tuple(p.strip() for p in args.cluster_peers.split(",") if p.strip()),
        cluster_peers_file=args.cluster_peers_file,
        cluster_peers_file_refresh=args.cluster_peers_file_refresh,
        cluster_self=args.cluster_self,
        cluster_peers_selector=args.cluster_peers_selector,
        cluster_peers_namespace=args.cluster_peers_namespace,
        cluster_replication_factor=args.cluster_replication_factor,
        cluster_handoff_overlap=args.cluster_handoff_overlap,
        cluster_leave_delay=args.cluster_leave_delay,
    )


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
