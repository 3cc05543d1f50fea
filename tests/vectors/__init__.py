"""Shared test vectors: one expected behaviour, run against every implementation of it."""
