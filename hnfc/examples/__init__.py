"""Bundled example models: small, deterministic, written the way people write them naively."""
