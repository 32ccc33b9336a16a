"""Turnout: migration."""
