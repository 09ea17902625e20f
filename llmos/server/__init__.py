"""The HTTP edge: the FastAPI app, OpenAI and native routes, serving (OpenAI <-> runtime), model pool."""
