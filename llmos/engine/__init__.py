"""The continuous-batching inference engine: token ids in, token ids out.

``Engine`` runs one scheduling step at a time (schedule → execute → update); ``AsyncEngine``
drives it from a background thread and turns token ids into text for many concurrent callers.
This package never imports the server, the registry, tokenizers or pydantic.
"""
