"""Turning a folder into a version: safe scanning, GGUF conversion, manifests, publishing."""
