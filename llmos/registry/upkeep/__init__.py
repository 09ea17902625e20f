"""Keeping the store honest: re-hashing versions against manifests, garbage collection."""
