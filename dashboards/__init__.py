"""Turnout: dashboards."""
