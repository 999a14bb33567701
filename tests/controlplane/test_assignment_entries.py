"""Assignment entries derived from the store's assignments (pure): the feed's wire shape."""

from __future__ import annotations

import logging

import pytest

from controlplane.feeds.assignments import assignment_entries
from controlplane.store.models import Assignment
from tests.controlplane.test_planner import dyno

pytestmark = pytest.mark.unit

CHECKSUM = "sha256:" + "ab" * 32


def test_an_entry_says_what_to_run_and_where_to_fetch_its_slug():
    web = dyno("web.1")
    entries = assignment_entries(
        [Assignment(web, "hello", "s-1", CHECKSUM, {"GREETING": "hi"})], "http://cp:5050/")
    assert entries == {web.id: {
        "id": web.id, "kind": "formation", "app": "hello", "name": "web.1", "type": "web",
        "release": web.release,
        "slug": {"url": "http://cp:5050/slugs/s-1/download", "sha256": "ab" * 32},
        "env": {"GREETING": "hi"}, "memory_mb": web.memory_mb, "health_check": None,
        "restart": web.restart_generation}}


def test_a_dyno_whose_release_has_no_slug_is_not_assigned(caplog):
    web, worker = dyno("web.1"), dyno("worker.1")
    with caplog.at_level(logging.ERROR):
        entries = assignment_entries([Assignment(web, "hello", None, None, {}),
                                      Assignment(worker, "hello", "s-1", CHECKSUM, {})],
                                     "http://cp")
    assert list(entries) == [worker.id]
    assert "web.1 of hello has no slug" in caplog.text
