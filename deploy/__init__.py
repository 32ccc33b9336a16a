"""Turnout: deploy."""
