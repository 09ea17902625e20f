"""llmos: an operating system for large language models.

The package root is the SDK surface: ``llmos.load_model(...)`` and ``llmos.LLM`` in-process, and
``llmos.connect(url)`` for a running server. They are imported lazily so ``import llmos.registry``
or the CLI's ``--help`` do not pay for torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["LLM", "Model", "connect", "load_model", "__version__"]

if TYPE_CHECKING:
    from llmos.client import connect
    from llmos.sdk import LLM, Model, load_model


def __getattr__(name: str) -> Any:
    if name in ("LLM", "Model", "load_model"):
        from llmos import sdk

        return getattr(sdk, name)
    if name == "connect":
        from llmos.client import connect

        return connect
    raise AttributeError(f"module 'llmos' has no attribute {name!r}")
