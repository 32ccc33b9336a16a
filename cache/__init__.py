"""Turnout: cache."""
