"""Peer sources without Kubernetes: a fixed list and a file that is re-read when it changes.

Place in the pipeline: a `PeerSource` feeds `collector.cluster.membership.Membership`, which
turns each member list into a ring for the scrape manager. Like a discoverer, a source runs
until cancelled and reports through a callback; it may report the same list again (the
membership ignores repeats).

``--cluster.peers=a,b,c`` (`StaticPeers`) is fixed for the process's life. ``--cluster.peers-file``
(`PeersFile`) is the same list in a file, checked every few seconds, so members can be added
and removed without restarting the others: write the new list to every member's file (or one
shared file) and each picks it up within the refresh interval. Names are separated by new
lines or commas; ``#`` starts a comment.

Prometheus counterpart: none (``file_sd_configs`` is the model for the file form).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn, Protocol

__all__ = ["PeerSource", "PeersFile", "PublishPeers", "StaticPeers", "parse_peers"]

log = logging.getLogger(__name__)

PublishPeers = Callable[[Sequence[str]], None]
"""Hands the full current member list to the membership. Never blocks."""


class PeerSource(Protocol):
    """Where the member list comes from."""

    async def run(self, publish: PublishPeers) -> NoReturn:
        """Report the member list now and on every change, until cancelled; errors are
        logged and retried inside (the last good list stays in force), never raised."""
        ...


def parse_peers(text: str) -> tuple[str, ...]:
    """Member names from a peers file: lines or commas, ``#`` comments, blanks ignored."""
    names: list[str] = []
    for line in text.splitlines():
        for item in line.split("#", 1)[0].split(","):
            name = item.strip()
            if name:
                names.append(name)
    return tuple(dict.fromkeys(names))


class StaticPeers:
    """``--cluster.peers=a,b,c``: one fixed list."""

    def __init__(self, peers: Sequence[str]) -> None:
        self.peers = tuple(peers)

    async def run(self, publish: PublishPeers) -> NoReturn:
        """Report the list once, then wait to be cancelled."""
        publish(self.peers)
        await asyncio.Event().wait()
        raise AssertionError("unreachable: a peer source only ends by cancellation")


class PeersFile:
    """``--cluster.peers-file``: the list in a file, re-read every ``refresh`` seconds."""

    def __init__(self, path: str | Path, *, refresh: float = 5.0) -> None:
        self.path = Path(path)
        self.refresh = refresh

    async def run(self, publish: PublishPeers) -> NoReturn:
        """Report the file's list whenever its content changes.

        A file that cannot be read, or lists nobody, keeps the last list in force: a file
        being rewritten in place can be read empty or missing for a moment, and a member must
        not drop every target because of that (replace the file by a rename to be safe from
        half-written lists too). Each distinct problem is logged once.
        """
        last: str | None = None
        problem = ""
        while True:
            try:
                # A thread: even a small file read must not block the event loop.
                text = await asyncio.to_thread(self.path.read_text, encoding="utf-8")
                peers = parse_peers(text)
                if not peers:
                    raise ValueError("it lists no members")
            except (OSError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
                if str(exc) != problem:
                    problem = str(exc)
                    log.error("cluster peers file %s: %s; keeping the last members", self.path, exc)
            else:
                problem = ""
                if text != last:
                    last = text
                    publish(peers)
            await asyncio.sleep(self.refresh)
