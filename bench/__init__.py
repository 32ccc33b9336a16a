"""Turnout: bench."""
