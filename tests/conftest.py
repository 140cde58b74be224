"""Suite-wide pytest setup."""

from __future__ import annotations

import asyncio

# pytest-asyncio's ``_temporary_event_loop`` calls ``asyncio.get_event_loop()``, which creates
# (and never closes) a loop when none was ever set in the main thread; the garbage collector then
# reports it as an unclosed loop in whichever test runs next (pytest-asyncio#724), and warnings
# are errors here. Marking the main thread's loop as explicitly unset makes that call raise
# instead of creating one.
asyncio.set_event_loop(None)
