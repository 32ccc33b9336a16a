"""Turnout: gateway."""
