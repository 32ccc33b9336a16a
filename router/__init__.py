"""Turnout: router."""
