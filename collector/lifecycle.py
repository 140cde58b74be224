"""The agent's process lifecycle: signals in, an ordered stop out.

Place in the pipeline: above `collector.agent` (what runs) and below the CLI and the scrape
workers' supervisor (which choose it): `run_agent` builds the `Agent`, runs it as the main
task and turns SIGTERM/SIGINT (and ``POST /-/quit``) into the one stop signal there is,
cancellation of that task, after the cluster hand-off delay when sharded; SIGHUP reloads.
The order of the stop itself (discovery, then the scrape loops with their stale markers, then
remote write's bounded flush) is `Agent.run`'s nesting of task groups.

Prometheus counterpart: the signal handling and ``run.Group`` actors of ``cmd/prometheus/main.go``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from collector.agent import Agent
from collector.config import AgentOptions
from collector.errors import CollectorError
from collector.model.duration import format_duration

__all__ = ["run_agent"]

log = logging.getLogger("collector.agent")


async def run_agent(options: AgentOptions, *, agent_class: type[Agent] = Agent) -> int:
    """Run the agent until SIGTERM/SIGINT (or ``POST /-/quit``); SIGHUP reloads.

    SIGINT has an explicit handler like SIGTERM's: a process started with SIGINT ignored (a
    shell's background job) has no KeyboardInterrupt to rely on. Returns the exit code.
    ``agent_class``: `collector.workers` runs its supervisor with the same lifecycle.
    """
    loop = asyncio.get_running_loop()
    agent = agent_class(options)
    main = asyncio.current_task()
    assert main is not None
    stopping = False

    leave: asyncio.TimerHandle | None = None

    def stop(reason: str) -> None:
        nonlocal stopping, leave
        if stopping:
            log.info("%s: already stopping", reason)
            return
        if leave is None and agent.leave_delay > 0:
            # Leave the cluster first: /-/ready fails, so the peers (and this member, which
            # watches its own pod too) hand this member's targets over; it keeps scraping them
            # for the hand-off overlap, and only then the ordered stop begins.
            agent.leaving = True
            log.info(
                "%s: leaving the cluster: not ready, still scraping for %s, then stopping "
                "(signal again to stop now)",
                reason,
                format_duration(agent.leave_delay),
            )
            leave = loop.call_later(agent.leave_delay, stop, "left the cluster")
            return
        if leave is not None:
            leave.cancel()  # the delay ran out, or a second signal: stop now
        stopping = True
        agent.begin_stop()
        log.info(
            "%s: stopping discovery, then the scrape loops (stale markers), then remote write: "
            "sending for at most %s; whatever is still unsent then stays in the write-ahead queue "
            "under %s for the next start",
            reason,
            format_duration(agent.flush_deadline),
            options.storage_path,
        )
        main.cancel()

    def reload() -> None:
        task = loop.create_task(_reload_quietly(agent))
        _background.add(task)
        task.add_done_callback(_background.discard)

    agent.on_quit = lambda: stop("POST /-/quit")
    loop.add_signal_handler(signal.SIGTERM, stop, "received SIGTERM")
    loop.add_signal_handler(signal.SIGINT, stop, "received SIGINT")
    loop.add_signal_handler(signal.SIGHUP, reload)
    started = loop.time()
    try:
        await agent.run()
    except asyncio.CancelledError:
        if not stopping:
            raise
        log.info("stopped after %.1fs of shutdown", loop.time() - started)
        return 0
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(signum)


_background: set[asyncio.Task[None]] = set()


async def _reload_quietly(agent: Agent) -> None:
    try:
        await agent.reload()
    except CollectorError:
        pass  # already logged; the old config keeps running
