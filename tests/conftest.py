"""Suite-wide pytest setup: event-loop hygiene for a warnings-as-errors suite, and a
reproducible Hypothesis."""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

# The property tests draw the same examples on every machine and every run, so a green run
# here is a green run in CI. Exploring new examples is opt-in (``HYPOTHESIS_PROFILE=explore``)
# and so is the long fuzzing in ``python -m benchmarks.fuzz``; what either finds becomes an
# ``@example`` or a fixture.
settings.register_profile("repeatable", derandomize=True, database=None)
settings.register_profile("explore")
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))

# pytest-asyncio's ``_temporary_event_loop`` calls ``asyncio.get_event_loop()``, which creates
# (and never closes) a loop when none was ever set in the main thread; the garbage collector then
# reports it as an unclosed loop in whichever test runs next (pytest-asyncio#724), and warnings
# are errors here. Marking the main thread's loop as explicitly unset makes that call raise
# instead of creating one.
asyncio.set_event_loop(None)


@pytest.fixture(autouse=True)
def _sync_test_event_loop(request: pytest.FixtureRequest) -> Iterator[None]:
    """Give sync tests a loop we close ourselves.

    looptime 0.9's ``pytest_pyfunc_call`` calls ``policy.get_event_loop()`` for every test; in a
    sync test that silently creates a loop nobody closes, whose self-pipe sockets later raise a
    ResourceWarning (an error under ``filterwarnings = error``) in some unrelated async test.
    """
    if inspect.iscoroutinefunction(request.function):
        yield
        return
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield
    finally:
        asyncio.set_event_loop(None)
        loop.close()
