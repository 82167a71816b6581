"""Bridges to other SNN libraries (optional dependencies)."""
