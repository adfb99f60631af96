"""Reliability and security, shown with figures (docs/reliability.md)."""
