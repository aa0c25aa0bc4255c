"""The fetch stage: download feeds politely and safely, and decide what that means.

`client` does the HTTP (and file) I/O, `policy` holds the pure rules for a
feed's schedule and state, and `guard` keeps fetches away from private
addresses. Only this facade is meant to be imported by other stages.
"""

from aggregator.fetch.client import fetch_feed, fetch_many
from aggregator.fetch.discover import DiscoveryError, FoundFeed, discover_feeds
from aggregator.fetch.guard import UnsafeURLError, check_url
from aggregator.fetch.policy import apply_result, is_due

__all__ = [
    "DiscoveryError",
    "FoundFeed",
    "UnsafeURLError",
    "apply_result",
    "check_url",
    "discover_feeds",
    "fetch_feed",
    "fetch_many",
    "is_due",
]
