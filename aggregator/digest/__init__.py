"""The digest stage: select and rank a period's clusters, render them in each format."""

from aggregator.digest.render import render
from aggregator.digest.select import build_digest

__all__ = ["build_digest", "render"]
