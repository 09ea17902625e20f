"""llmos: an operating system for large language models.

The package root is the SDK surface: ``llmos.load_model(...)``, ``llmos.LLM`` and, later,
``llmos.connect(url)``. Everything else lives in the subpackages.
"""

from __future__ import annotations

__version__ = "0.1.0"

from llmos.sdk import LLM, Model, load_model

__all__ = ["LLM", "Model", "load_model", "__version__"]
