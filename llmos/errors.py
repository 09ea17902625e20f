"""The one exception hierarchy of llmos.

Each class maps to one HTTP status and one OpenAI-style error ``type``/``code`` (used by the
server in one place) and its message is what the CLI prints, without a traceback.
"""

from __future__ import annotations


class LLMOSError(Exception):
    """Base of every expected llmos error."""

    status_code: int = 500
    error_type: str = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    def to_openai(self) -> dict[str, object]:
        """The OpenAI error envelope: ``{"error": {message, type, param, code}}``."""
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequest(LLMOSError):
    status_code = 400
    error_type = "invalid_request_error"


class ContextOverflow(InvalidRequest):
    code = "context_length_exceeded"


class InvalidModelName(InvalidRequest):
    code = "invalid_model_name"


class InvalidModelFile(InvalidRequest):
    code = "invalid_model_file"


class UnsupportedArchitecture(InvalidRequest):
    code = "unsupported_architecture"


class ModelNotFound(LLMOSError):
    status_code = 404
    error_type = "not_found_error"
    code = "model_not_found"


class AlreadyExists(LLMOSError):
    status_code = 409
    error_type = "conflict_error"
    code = "conflict"


class CorruptArtifact(LLMOSError):
    """A stored file does not match its recorded digest (or cannot be read)."""

    status_code = 500
    error_type = "server_error"
    code = "corrupt_artifact"


class SourceUnavailable(LLMOSError):
    """A model source (package index, hub) could not be reached or had no such artifact."""

    status_code = 502
    error_type = "server_error"
    code = "source_unavailable"


class EngineDead(LLMOSError):
    status_code = 503
    error_type = "server_error"
    code = "engine_dead"


class GenerationFailed(LLMOSError):
    """The engine failed a request it had admitted (a fault inside ``step()``)."""

    status_code = 500
    error_type = "server_error"
    code = "generation_failed"

    @classmethod
    def because(cls, reason: str | None) -> GenerationFailed:
        """The error for an engine output that finished with ``error`` (``reason``: its message)."""
        return cls(f"Generation failed: {reason or 'the engine gave no reason'}")


class Unauthorized(LLMOSError):
    """A missing or wrong API key."""

    status_code = 401
    error_type = "authentication_error"
    code = "invalid_api_key"


class PayloadTooLarge(InvalidRequest):
    status_code = 413
    code = "request_too_large"


class ServerBusy(LLMOSError):
    """Backpressure: the model's waiting queue is full; the client should retry after a while."""

    status_code = 429
    error_type = "rate_limit_error"
    code = "server_busy"

    def __init__(self, message: str, *, retry_after: int = 1, param: str | None = None) -> None:
        super().__init__(message, param=param)
        self.retry_after = retry_after


class RequestTimeout(LLMOSError):
    status_code = 408
    error_type = "timeout_error"
    code = "request_timeout"


class ServiceUnavailable(LLMOSError):
    """The server is starting, draining, or cannot fit a model right now."""

    status_code = 503
    error_type = "server_error"
    code = "service_unavailable"

    def __init__(self, message: str, *, retry_after: int | None = None, param: str | None = None) -> None:
        super().__init__(message, param=param)
        self.retry_after = retry_after


class ReplicaFailed(ServiceUnavailable):
    """The replica serving a scaled-out request died after it had started answering; another
    replica can take the request again."""

    code = "replica_failed"


class DatasetNotFound(LLMOSError):
    """No dataset (or no such version of one) under that name."""

    status_code = 404
    error_type = "not_found_error"
    code = "dataset_not_found"


class InvalidDataset(InvalidRequest):
    """A data file that cannot be imported as asked: bad rows, an unknown format or schema."""

    code = "invalid_dataset"


class JobNotFound(LLMOSError):
    status_code = 404
    error_type = "not_found_error"
    code = "job_not_found"


class FileNotFound(LLMOSError):
    status_code = 404
    error_type = "not_found_error"
    code = "file_not_found"


class BatchNotFound(LLMOSError):
    status_code = 404
    error_type = "not_found_error"
    code = "batch_not_found"


class ResultNotFound(LLMOSError):
    status_code = 404
    error_type = "not_found_error"
    code = "result_not_found"


class Forbidden(LLMOSError):
    """A valid key that may not do this: a scope it lacks, or a model outside its allow-list."""

    status_code = 403
    error_type = "permission_error"
    code = "insufficient_scope"


class ModelNotAllowed(Forbidden):
    code = "model_not_allowed"


class RateLimited(LLMOSError):
    """A key's request or token limit: retry after ``retry_after`` seconds. ``headers`` are the
    ``x-ratelimit-*`` headers of the refused request (the same ones a success carries)."""

    status_code = 429
    error_type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(
        self,
        message: str,
        *,
        retry_after: int = 1,
        reason: str = "rpm",
        headers: dict[str, str] | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message, param=param)
        self.retry_after = retry_after
        self.reason = reason
        self.headers = dict(headers or {})


class BudgetExceeded(RateLimited):
    """A key's token budget for its period is spent (or this request could overspend it)."""

    error_type = "insufficient_quota"
    code = "insufficient_quota"


class GuardrailBlocked(InvalidRequest):
    """A guardrail rule refused the input or the output; ``rule`` names it."""

    code = "content_blocked"

    def __init__(self, message: str, *, rule: str, stage: str, param: str | None = None) -> None:
        super().__init__(message, param=param)
        self.rule = rule
        self.stage = stage


class KeyNotFound(LLMOSError):
    status_code = 404
    error_type = "not_found_error"
    code = "key_not_found"
