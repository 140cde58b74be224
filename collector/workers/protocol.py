"""Messages between the main process and a scrape worker, on one socketpair per worker.

Place in the pipeline: the pipe of `collector.workers`. Each frame is a 4-byte big-endian length
and a pickle of one message (both ends are the same code from the same installation: pickle is
the private format of one agent, never read from anywhere else). Messages are few and small:
nothing per sample crosses the pipe.

main -> worker:
    `Init` (first, once), ``("config", Config)`` after a reload, ``("targets", TargetSets)``
    the newest full map from discovery (latest wins on the worker's side too), ``("ring", N)``
    the worker count after ``auto`` added one,
    ``("cardinality", id, pool, url, top)`` a cardinality report request.
worker -> main:
    `Snapshot` every `SNAPSHOT_INTERVAL` (targets, queues, metric families),
    ``("reply", id, data)`` the answer to a request.

An end of file on either side means the other is gone: the worker stops in order (its queues
keep what is unsent), the main process restarts the worker.
"""

from __future__ import annotations

import asyncio
import pickle
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from collector.config import AgentOptions, Config
from collector.model.targetgroup import TargetSets

__all__ = [
    "SNAPSHOT_INTERVAL",
    "Family",
    "Init",
    "ProtocolError",
    "Snapshot",
    "read_message",
    "write_message",
]

SNAPSHOT_INTERVAL = 1.0
"""Seconds between a worker's snapshots: how stale ``/metrics`` and the targets page may be."""

TARGETS_BUDGET = 0.01
"""Share of a worker's CPU its snapshots' target lists may take: one that took 60 ms (about
10,000 targets) is sent every 6 s; the other parts every `SNAPSHOT_INTERVAL`."""

MAX_FRAME = 256 << 20
"""A frame longer than this is a broken pipe, not a message."""

_LENGTH = struct.Struct(">I")

Family = tuple[str, str, str, str, list[tuple[str, dict[str, str], float]]]
"""One metric family: name, help, type, unit, then ``(sample name, labels, value)``."""


class ProtocolError(Exception):
    """A frame that is not a message of this protocol (the peer is broken, not just gone)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Init:
    """What a new worker process needs before it scrapes."""

    index: int
    count: int
    options: AgentOptions
    """The agent's options; ``storage_path`` is already this worker's own directory."""
    config: Config
    targets: TargetSets | None
    """The newest full target-set map when the worker is (re)started, if discovery sent one."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """A worker's state for the main process's web API and ``/metrics``."""

    targets_included: bool = True
    """False: the target and pool lists were left out (`TARGETS_BUDGET`), the last ones hold."""
    active_targets: Sequence[Mapping[str, Any]] = ()
    dropped_targets: Sequence[Mapping[str, Any]] = ()
    dropped_counts: Mapping[str, int] = field(default_factory=dict)
    pools: Sequence[Mapping[str, Any]] = ()
    remote_write: Sequence[Mapping[str, Any]] = ()
    pending: int = 0
    families: Sequence[Family] = ()


async def write_message(writer: asyncio.StreamWriter, message: object) -> None:
    """Send one message and wait until the transport has taken it."""
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    writer.write(_LENGTH.pack(len(body)) + body)
    await writer.drain()


async def read_message(reader: asyncio.StreamReader) -> object | None:
    """The next message, or None at a clean end of file (between frames)."""
    try:
        head = await reader.readexactly(_LENGTH.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise ProtocolError("the pipe ended inside a frame header") from exc
        return None
    (length,) = _LENGTH.unpack(head)
    if length > MAX_FRAME:
        raise ProtocolError(f"frame of {length} bytes, over the {MAX_FRAME} limit")
    try:
        body = await reader.readexactly(length)
    except asyncio.IncompleteReadError as exc:
        raise ProtocolError(f"the pipe ended inside a {length}-byte frame") from exc
    try:
        message: object = pickle.loads(body)  # our own child process: see the docstring
    except Exception as exc:
        raise ProtocolError(f"undecodable frame of {length} bytes: {exc}") from exc
    return message
