"""A flood of unauthenticated requests from many addresses, and what the owner's login
and another user's WebSocket see meanwhile (csm/bench/gate.py runs it)."""

from __future__ import annotations

import asyncio
import collections
import multiprocessing
import re
import threading
import time

from csm.bench.common import (
    percentile,
    say,
    verdict,
)
from csm.bench.gate_requests import GOALS, front_websocket, ms, round_trips, session
from csm.testing.stacks import ThrowawayStack

# ---- a flood ----------------------------------------------------------------------------------------


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """One HTTP/1.1 answer read to its end: (status, whether the server closes)."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
    status = int(head.split(None, 2)[1])
    length = re.search(r"\r\ncontent-length: *(\d+)", head)
    if length:
        await reader.readexactly(int(length.group(1)))
    elif "transfer-encoding: chunked" in head:
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            await reader.readexactly(size + 2)
        await reader.readuntil(b"\r\n")
    return status, "\r\nconnection: close" in head


async def _flood_connection(port: int, host: str, source: str, interval: float, deadline: float, tally) -> None:
    """GET / without a session on one keep-alive connection, one every `interval` s at most."""
    loop = asyncio.get_running_loop()
    request = f"GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: csm-bench-flood\r\n\r\n".encode()
    due, writer = loop.time(), None
    while loop.time() < deadline:
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
            writer.write(request)
            status, closes = await _read_answer(reader)
            tally[status] += 1
            if closes:
                writer.close()
                writer = None
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, IndexError):
            tally["error"] += 1
            writer = None
            await asyncio.sleep(0.05)
        due = max(due + interval, loop.time() - interval)  # falling behind does not burst later
        await asyncio.sleep(max(0.0, due - loop.time()))
    if writer:
        writer.close()


def _flood_process(
    pipe, port: int, host: str, sources: list[str], rate: float, seconds: float, per_source: int
) -> None:
    async def flood() -> dict:
        tally: collections.Counter = collections.Counter()
        loop = asyncio.get_running_loop()
        start = loop.time()
        deadline, connections = start + seconds, len(sources) * per_source
        await asyncio.gather(
            *(
                _flood_connection(port, host, s, connections / rate, deadline, tally)
                for s in sources
                for _ in range(per_source)
            )
        )
        return {"answers": dict(tally), "seconds": loop.time() - start}

    pipe.send(asyncio.run(flood()))


def owner_logins(stack: ThrowawayStack, owner: str, until: float, out: list[float]) -> None:
    """The owner logs in every 3 s from an address of their own; a refused login counts as
    infinitely slow."""
    while time.monotonic() < until:
        start = time.monotonic()
        try:
            session(stack, owner, "127.0.0.200")
            out.append(time.monotonic() - start)
        except Exception as e:  # noqa: BLE001 - a refused login is a figure, not a crash
            out.append(float("inf"))
            say(f"the owner's login failed: {e}")
        time.sleep(max(0.0, start + 3 - time.monotonic()))


def logins_and_round_trips(stack: ThrowawayStack, owner: str, ws, seconds: float) -> tuple[list, list]:
    """The owner's login times and another user's round trips (one every 10 ms), for `seconds`."""
    until, times, rtts = time.monotonic() + seconds, [], []
    thread = threading.Thread(target=owner_logins, args=(stack, owner, until, times))
    thread.start()
    while time.monotonic() < until:
        rtts += round_trips(ws, 10, pause=0.01)
    thread.join()
    return times, rtts


def flood(stack: ThrowawayStack, owner: str, other: str, rate: float, seconds: float) -> dict:
    """`rate` GETs a second without a session to the owner's address from 10 loopback
    addresses, sent by another process (its work must not hold up the measuring
    thread's clock readings); meanwhile the owner's logins and another user's WebSocket,
    against the same for 15 s before the flood."""
    ws = front_websocket(stack, other, session(stack, other, "127.0.0.201"))
    fork = multiprocessing.get_context("fork")
    try:
        say("flood: the owner's logins and another user's WebSocket for 15 s before it")
        logins_before, rtt_before = logins_and_round_trips(stack, owner, ws, 15)
        say(f"flood: {rate:.0f} requests/s without a session from 10 addresses for {seconds:.0f} s")
        here, there = fork.Pipe()
        host = f"{stack.plan.users[owner].hostname}:{stack.http_port}"
        proc = fork.Process(
            target=_flood_process,
            args=(there, stack.http_port, host, [f"127.0.0.{101 + i}" for i in range(10)], rate, seconds, 4),
        )
        proc.start()
        logins_during, rtt_during = logins_and_round_trips(stack, owner, ws, seconds)
        tally = here.recv()
        proc.join(30)
    finally:
        ws.close()
    answered = sum(n for k, n in tally["answers"].items() if k != "error")
    return {
        "target_rate": rate,
        "reached_rate": answered / tally["seconds"],
        "seconds": tally["seconds"],
        "answers": tally["answers"],
        "owner_login_s": {
            "before_p95": percentile(logins_before, 95),
            "logins": len(logins_during),
            "p50": percentile(logins_during, 50),
            "times": logins_during,
            "p95": verdict(percentile(logins_during, 95), GOALS["flood_login_p95_s"]),
        },
        "websocket_ms": {
            "before_p50": ms(rtt_before, 50),
            "during_p50": ms(rtt_during, 50),
            "before_p99": ms(rtt_before, 99),
            "during_p99": ms(rtt_during, 99),
            "ratio_p50": verdict(ms(rtt_during, 50) / ms(rtt_before, 50), GOALS["flood_websocket_ratio"]),
        },
    }
