"""TorchServe 0.12's 503 for a full job queue, said plainly, and when a client should try again.

TorchServe answers a request that its model's job queue (job_queue_size, jobQueueSize) cannot take
with 503 and 'Model "minilm" has no worker to serve inference request. Please use scale workers
API to add workers. ...' (its ApiUtils): the words it uses for a model with no worker at all, so
an operator reading them scales workers when the queue is merely full. At /predictions those words
stay (TorchServe's frontend answers before any handler runs); the front's routes (OpenAI, v2)
say what happened and add Retry-After, which the `openai` client and most HTTP clients honour.
"""

from __future__ import annotations

import re

NO_WORKER = re.compile(r'Model "(?P<model>[^"]+)" has no worker to serve (?:inference|describe) request')
"""A describe (the front's v2 metadata, asked of a worker) is a job in the same queue, refused alike."""
RETRY_AFTER_S = 1
"""Retry-After on the front's 503s: a queue drains in well under a second once it has room."""


def busy_message(message: str) -> str | None:
    """The plain words for TorchServe's full-queue 503 message; None for any other message."""
    found = NO_WORKER.search(message)
    if found is None:
        return None
    return (f"model {found['model']} cannot take this request now: its job queue is full (job_queue_size), "
            f"or it has no worker; retry in {RETRY_AFTER_S} s")
