"""The HTTP edge: the FastAPI app, the OpenAI and native routes, serving (OpenAI <-> runtime), the model pool."""
