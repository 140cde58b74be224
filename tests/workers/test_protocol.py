"""The pipe between the main process and a scrape worker (`collector.workers.protocol`)."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from collector.config import AgentOptions, Config
from collector.model.targetgroup import TargetGroup
from collector.workers.protocol import (
    MAX_FRAME,
    Init,
    ProtocolError,
    Snapshot,
    read_message,
    write_message,
)


async def pipe() -> tuple[asyncio.StreamReader, asyncio.StreamWriter, socket.socket]:
    ours, theirs = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=ours)
    return reader, writer, theirs


async def test_messages_round_trip_in_order() -> None:
    reader, writer, theirs = await pipe()
    _, their_writer = await asyncio.open_connection(sock=theirs)
    sets = {"job": [TargetGroup(source="0", targets=({"__address__": "a:1"},))]}
    init = Init(index=1, count=2, options=AgentOptions(), config=Config(), targets=sets)
    await write_message(their_writer, init)
    await write_message(their_writer, ("targets", sets))
    await write_message(their_writer, Snapshot(pending=7))
    assert await read_message(reader) == init
    assert await read_message(reader) == ("targets", sets)
    got = await read_message(reader)
    assert isinstance(got, Snapshot)
    assert got.pending == 7
    their_writer.close()
    assert await read_message(reader) is None  # a clean end between frames
    writer.close()


async def test_an_end_inside_a_frame_or_a_huge_frame_is_an_error() -> None:
    reader, writer, theirs = await pipe()
    theirs.sendall(struct.pack(">I", 100) + b"only part")
    theirs.close()
    with pytest.raises(ProtocolError, match="inside a 100-byte frame"):
        await read_message(reader)
    writer.close()

    reader, writer, theirs = await pipe()
    theirs.sendall(struct.pack(">I", MAX_FRAME + 1))
    with pytest.raises(ProtocolError, match="over the"):
        await read_message(reader)
    theirs.close()
    writer.close()

    reader, writer, theirs = await pipe()
    theirs.sendall(b"\x00\x00")
    theirs.close()
    with pytest.raises(ProtocolError, match="frame header"):
        await read_message(reader)
    writer.close()


async def test_a_frame_that_is_not_a_pickle_is_an_error() -> None:
    reader, writer, theirs = await pipe()
    theirs.sendall(struct.pack(">I", 4) + b"junk")
    with pytest.raises(ProtocolError, match="undecodable frame of 4 bytes"):
        await read_message(reader)
    theirs.close()
    writer.close()
