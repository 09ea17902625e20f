"""A loaded model: engine + tokenizer + chat template (or a sentence-transformers embedder).

``model_runtime`` resolves a reference through the registry and starts an engine; ``tokenizer`` and
``chat_template`` are the text side; ``embeddings`` the embedding models; ``capability`` the probe run
at import (the registry records its report); ``merge`` bakes a LoRA adapter into a new version.
Submodules are imported directly, so importing the package costs nothing.
"""
