"""Batch jobs (the OpenAI Files and Batch APIs): stored files and batches of requests that the
server runs behind interactive traffic, resumable across restarts. The server runs them
(``llmos.server.batches``); ``llmos batch`` and the ``openai`` client submit them over HTTP."""

from llmos.batch.files import FileInfo, FileStore
from llmos.batch.jobs import BatchInfo, BatchLine, BatchStore, Progress, parse_input, result_line

__all__ = [
    "BatchInfo",
    "BatchLine",
    "BatchStore",
    "FileInfo",
    "FileStore",
    "Progress",
    "parse_input",
    "result_line",
]
