"""Fixtures shared by the whole suite."""

from dbsetup import database_url

__all__ = ["database_url"]
