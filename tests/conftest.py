"""Fixtures shared by the whole suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from dbsetup import database_url
from feedserver import FeedServer

__all__ = ["database_url", "feed_server"]


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    """A loopback HTTP server with scripted routes, one per test."""
    with FeedServer() as server:
        yield server
