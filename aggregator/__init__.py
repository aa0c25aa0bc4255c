"""aggregator: finds the stories several news outlets wrote about the same event."""

__version__ = "0.1.0"
