"""Turnout: replicas."""
