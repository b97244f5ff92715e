"""Function nodes of the photo_embedding workflow (workflows/photo_embedding.yaml):

    efficientnet_lite0 -> caption -> minilm -> assemble
            \\____________\\______________/

A photo goes in; its labels, a caption built from them and the caption's MiniLM embedding come
out, so a text query embedded by /predictions/minilm finds the photo by cosine similarity. The
photo goes to efficientnet_lite0 as it came: its handler checks and unwraps it as at /predictions.

TorchServe hands each node the previous nodes' response bodies and ignores their statuses, so a
failed request travels on as its error body {"error", "detail"}: every node passes it through
(handlers.payload.upstream_error) and `assemble` answers it with its status in the body.
TorchServe calls each function once with data=None when the node loads.
"""

from __future__ import annotations

import json
import logging

from handlers.errors import InferenceFailed, RequestError
from handlers.payload import compact_json, upstream_error

log = logging.getLogger(__name__)

CLASSIFIER, CAPTION, EMBEDDER = "efficientnet_lite0", "caption", "minilm"
"""Node names as the DAG spells them; `assemble` receives one input per name."""
CAPTION_LABELS = 3
CAPTION_MIN_PROBABILITY = 0.1


def caption(data, context):
    """Turn the classifier's {label: probability} into the text MiniLM embeds."""
    if data is None:
        return None
    return [_guarded(_caption_request, request.get("body")) for request in data]


def assemble(data, context):
    """Join labels, caption and embedding; a failed request's error, with its status, instead.
    The workflow's answer, so compact JSON bytes (a dict would be pretty-printed by TorchServe)."""
    if data is None:
        return None
    return [compact_json(_guarded(_assembled, request)) for request in data]


# ---- pure parts ------------------------------------------------------------------------------
def caption_for(labels: dict[str, float]) -> str:
    """'a photo of a tabby, Egyptian cat': the most probable labels, those likely enough to matter."""
    ranked = sorted(labels.items(), key=lambda item: item[1], reverse=True)
    chosen = [name for name, probability in ranked[:CAPTION_LABELS] if probability >= CAPTION_MIN_PROBABILITY]
    words = ", ".join(chosen or [ranked[0][0]])
    article = "an" if words[0].lower() in "aeiou" else "a"
    return f"a photo of {article} {words}"


def _caption_request(body) -> dict:
    return upstream_error(body) or {"text": caption_for(json.loads(bytes(body)))}


def _assembled(request: dict) -> dict:
    for node in (CLASSIFIER, CAPTION, EMBEDDER):  # the first failure is the one to report
        failure = upstream_error(request.get(node))
        if failure:
            return {**failure.to_body(), "status": failure.status_code}
    return {
        "labels": json.loads(bytes(request[CLASSIFIER])),
        "caption": json.loads(bytes(request[CAPTION]))["text"],
        "embedding": json.loads(bytes(request[EMBEDDER]))["embedding"],
    }


def _guarded(step, value):
    """Run one request's step; its RequestError (or a bug, logged) becomes its error body."""
    try:
        result = step(value)
    except RequestError as err:
        return err.to_body()
    except Exception:
        log.exception("workflow step %s failed", step.__name__)
        return InferenceFailed().to_body()
    return result.to_body() if isinstance(result, RequestError) else result
