"""Plots (matplotlib, headless)."""
