"""The LIST prefetch reads the next ``continue`` token from the metadata before ``items``."""

from __future__ import annotations

from collector.discovery.kubernetes.wire import peek_continue


def test_peek_continue_reads_metadata_before_items() -> None:
    raw = b'{"kind":"PodList","metadata":{"resourceVersion":"7","continue":"eyJ2Ijo"},"items":[]}'
    assert peek_continue(raw) == "eyJ2Ijo"


def test_peek_continue_ignores_items_and_last_pages() -> None:
    assert peek_continue(b'{"metadata":{"resourceVersion":"7"},"items":[]}') == ""
    # A "continue" inside an object (after "items") is never taken for the token.
    assert peek_continue(b'{"metadata":{},"items":[{"continue":"x"}]}') == ""
    # Metadata after items (not what servers send): no prefetch, the decoded body decides.
    assert peek_continue(b'{"items":[],"metadata":{"continue":"x"}}') == ""
