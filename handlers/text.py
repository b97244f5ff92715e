"""Pure text functions: request payload -> texts -> token ids -> padded batch -> pooled embeddings.

No TorchServe or transformers imports: the tokenizer is passed in, so everything here is
unit-tested without a server or a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F

from handlers.errors import (
    EmptyPayload,
    InvalidPayload,
    PayloadTooLarge,
    UndecodableInput,
    UnsupportedMediaType,
)
from handlers.payload import json_type, parse_json, request_payload

SEND_TEXT = (
    'send JSON {"text": "..."}, {"texts": ["...", ...]} or {"text": "...", "labels": ["...", ...]} '
    "(Content-Type: application/json), or the text itself with Content-Type: text/plain"
)
JSON_KEYS = ("text", "texts", "labels")
DECIMALS = 6


@dataclass(frozen=True)
class TextRequest:
    """What one request asks for: embeddings of `texts`, or scores of one text against `labels`."""

    texts: tuple[str, ...]
    single: bool = True
    """"text" (answered with one vector) rather than "texts" (a list)."""
    labels: tuple[str, ...] | None = None
    """Zero-shot labels; None for an embedding request."""


@dataclass(frozen=True)
class TokenizedRequest:
    """A request's token ids: its texts first, then one hypothesis per zero-shot label."""

    request: TextRequest
    ids: tuple[tuple[int, ...], ...]
    truncated: tuple[bool, ...]
    """Per text of the request (hypotheses excluded): whether it was cut to max_tokens."""


# ---- payload -> TextRequest --------------------------------------------------------------
def extract_request(
    request: Mapping[str, Any], max_texts: int, max_chars: int, default_labels: Sequence[str] = (),
    declared_json: bool = False,
) -> TextRequest:
    """Read one TorchServe request dict (`data` or `body`) as a TextRequest, checking every limit;
    `declared_json`: the client's Content-Type says JSON, so the body must be JSON."""
    payload = request_payload(request)
    if payload is None:
        raise UnsupportedMediaType(f"no text in the request body; {SEND_TEXT}")
    if isinstance(payload, (bytes, bytearray)):
        payload = parse_raw(payload, declared_json)
    if isinstance(payload, str):
        return TextRequest((checked_text(payload, "text", max_chars),))
    if isinstance(payload, Mapping):
        return from_json(payload, max_texts, max_chars, default_labels)
    raise InvalidPayload(f"a JSON {json_type(payload)} is not a request; {SEND_TEXT}")


def parse_raw(raw: bytes | bytearray, declared_json: bool = False) -> str | Any:
    """Bytes TorchServe did not decode: UTF-8 text, or JSON. TorchServe parses a body sent as
    application/json itself, so one that arrives as bytes did not parse there: it is refused with the
    parser's reason (were it read as text, a malformed `[...` would be embedded and answered 200).
    Without a JSON Content-Type, a body starting with `{` is read as JSON, anything else as text."""
    try:
        text = bytes(raw).decode("utf-8-sig")  # a byte order mark (PowerShell's files) is not part of the text
    except UnicodeDecodeError as exc:
        raise UndecodableInput(f"the body is not valid UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if not text.strip() or not (declared_json or text.lstrip().startswith("{")):
        return text  # one text; a blank one is refused as empty, JSON type or not
    return parse_json(text, SEND_TEXT)


def from_json(payload: Mapping[str, Any], max_texts: int, max_chars: int, default_labels: Sequence[str]) -> TextRequest:
    unknown = sorted(set(payload) - set(JSON_KEYS))
    if unknown:
        raise InvalidPayload(f"unknown key(s) {unknown}; {SEND_TEXT}")
    if ("text" in payload) == ("texts" in payload):
        raise InvalidPayload(f'send exactly one of "text" and "texts"; {SEND_TEXT}')
    if "texts" in payload:
        if "labels" in payload:
            raise InvalidPayload('zero-shot "labels" go with one "text", not with "texts"')
        texts = checked_list(payload["texts"], "texts", max_texts, max_chars)
        if not texts:
            raise EmptyPayload('"texts" is an empty list')
        return TextRequest(texts, single=False)
    text = checked_text(payload["text"], "text", max_chars)
    if "labels" not in payload:
        return TextRequest((text,))
    return TextRequest((text,), labels=zero_shot_labels(payload["labels"], max_texts, max_chars, default_labels))


def from_tensor(elements: Sequence[str], name: str, max_texts: int, max_chars: int) -> TextRequest:
    """A v2 request's BYTES input `name`, one text per element, checked as v1's "texts" are but
    named by the tensor the client sent."""
    texts = checked_list(list(elements), name, max_texts, max_chars)
    if not texts:
        raise EmptyPayload(f'the input "{name}" has no elements')
    return TextRequest(texts, single=False)


def zero_shot_labels(value: Any, max_texts: int, max_chars: int, default_labels: Sequence[str]) -> tuple[str, ...]:
    """The request's labels; an empty list asks for the configured defaults."""
    labels = checked_list(value, "labels", max_texts, max_chars)
    if labels:
        return labels
    if not default_labels:
        raise EmptyPayload('"labels" is empty and this model has no default labels configured')
    return tuple(default_labels)


def checked_list(value: Any, name: str, max_items: int, max_chars: int) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise InvalidPayload(f'"{name}" must be a list of strings, got a JSON {json_type(value)}')
    if len(value) > max_items:
        raise PayloadTooLarge(f'"{name}" has {len(value)} items; the limit is {max_items} per request')
    return tuple(checked_text(item, f"{name}[{index}]", max_chars) for index, item in enumerate(value))


def checked_text(value: Any, name: str, max_chars: int) -> str:
    if not isinstance(value, str):
        raise InvalidPayload(f'"{name}" must be a string, got a JSON {json_type(value)}')
    if not value.strip():
        raise EmptyPayload(f'"{name}" is empty')
    if len(value) > max_chars:
        raise PayloadTooLarge(f'"{name}" has {len(value)} characters; the limit is {max_chars}')
    nul = value.find("\x00")
    if nul >= 0:  # no text has one; it truncates strings in C code, logs and databases
        raise InvalidPayload(f'"{name}" contains a NUL character (U+0000) at position {nul}')
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # JSON "\ud800": a lone surrogate the tokenizer cannot take
        raise UndecodableInput(f'"{name}" is not valid Unicode ({exc.reason} at position {exc.start})') from None
    return value


# ---- texts -> token ids -> padded batch ----------------------------------------------------
def hypotheses(labels: Sequence[str], template: str) -> tuple[str, ...]:
    """One sentence per label ("This text is about sports."): embeddings compare sentences best."""
    return tuple(template.format(label=label) for label in labels)


def tokenize_request(
    tokenizer: Callable[..., Mapping[str, list]], request: TextRequest, template: str, max_tokens: int,
    *, chars_per_token: int,
) -> TokenizedRequest:
    """Token ids for the texts and the label hypotheses, each cut to `max_tokens`.

    Each text is cut to `max_tokens * chars_per_token` characters first, so a request's cost
    follows what is kept, not what was sent; "truncated" says whether anything was dropped.
    The budget on the whole request is check_request_tokens'.
    """
    budget = max_tokens * chars_per_token
    texts = request.texts + hypotheses(request.labels or (), template)
    encoded = tokenizer([text[:budget] for text in texts], truncation=False, verbose=False)["input_ids"]
    cut = [truncate_ids(ids, max_tokens) for ids in encoded]
    return TokenizedRequest(
        request,
        ids=tuple(ids for ids, _ in cut),
        truncated=tuple(was_cut or len(text) > budget
                        for (_, was_cut), text in zip(cut[: len(request.texts)], request.texts, strict=True)),
    )


def check_request_tokens(item: TokenizedRequest, limit: int, chunk_texts: int, chunk_tokens: int) -> None:
    """The bound on one request's work: the token positions the encoder computes for it alone (its
    texts and label hypotheses, cut to max_tokens, padded in length chunks as embed_padded pads
    them). Above `limit`, a PayloadTooLarge (413) that names the setting."""
    lengths = sorted((len(ids) for ids in item.ids), reverse=True)
    total = sum((end - start) * width for start, end, width in chunk_bounds(lengths, chunk_texts, chunk_tokens))
    if total > limit:
        raise PayloadTooLarge(
            f"the request comes to {total} tokens ({len(item.ids)} texts{' and label hypotheses' if item.request.labels else ''}"
            f" after the cut to max_tokens, padding included); the limit is max_request_tokens ({limit}) per request: "
            "send fewer or shorter texts, in several requests")


def truncate_ids(ids: Sequence[int], max_tokens: int) -> tuple[tuple[int, ...], bool]:
    """Keep the first max_tokens - 1 ids and the closing special token ([SEP]); say whether it cut."""
    if len(ids) <= max_tokens:
        return tuple(ids), False
    return tuple(ids[: max_tokens - 1]) + (ids[-1],), True


def pad_sorted(sequences: Sequence[Sequence[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad to the longest sequence of this batch (not the model's 512), rows sorted longest first.

    `restore` puts the sorted rows back in request order: output_sorted[restore].
    """
    order = sorted(range(len(sequences)), key=lambda index: -len(sequences[index]))
    width = len(sequences[order[0]])
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, index in enumerate(order):
        input_ids[row, : len(sequences[index])] = torch.tensor(sequences[index], dtype=torch.long)
        attention_mask[row, : len(sequences[index])] = 1
    restore = torch.argsort(torch.tensor(order, dtype=torch.long))
    return {"input_ids": input_ids, "attention_mask": attention_mask, "restore": restore}


def chunk_bounds(lengths: Sequence[int], size: int, positions: int | None = None) -> list[tuple[int, int, int]]:
    """(start, end, width) of each chunk of rows sorted longest first: at most `size` rows; with
    `positions`, at most that many token positions (rows x width, at least one row) and no row
    shorter than half the chunk's longest, so that padding at most doubles what is computed and a
    long text does not pad many short ones to its length."""
    bounds, start = [], 0
    while start < len(lengths):
        width = max(int(lengths[start]), 1)
        end = min(len(lengths), start + (size if positions is None else max(1, min(size, positions // width))))
        if positions is not None:
            end = next((row for row in range(start + 1, end) if 2 * lengths[row] < width), end)
        bounds.append((start, end, width))
        start = end
    return bounds


def length_chunks(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, size: int, positions: int | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The rows of pad_sorted's batch in chunk_bounds' chunks, each trimmed to its own longest row."""
    lengths = [int(n) for n in attention_mask.sum(dim=1).tolist()]
    for start, end, width in chunk_bounds(lengths, size, positions):
        yield input_ids[start:end, :width], attention_mask[start:end, :width]


# ---- model output -> embeddings -> responses -------------------------------------------------
def embed_padded(
    encoder: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], batch: Mapping[str, torch.Tensor], chunk_texts: int,
    chunk_tokens: int | None = None,
) -> torch.Tensor:
    """Unit vectors in request order: `encoder(input_ids, attention_mask) -> hidden states` per length chunk."""
    chunks = length_chunks(batch["input_ids"], batch["attention_mask"], chunk_texts, chunk_tokens)
    pooled = [mean_pool(encoder(input_ids, mask), mask) for input_ids, mask in chunks]
    return torch.cat(pooled)[batch["restore"]]


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average the token vectors the mask keeps, then L2-normalise (how all-MiniLM-L6-v2 was trained)."""
    weights = attention_mask.unsqueeze(-1).to(torch.float32)
    summed = (hidden.float() * weights).sum(dim=1)
    return F.normalize(summed / weights.sum(dim=1).clamp(min=1e-9), p=2, dim=1)


def rank_labels(text: torch.Tensor, label_vectors: torch.Tensor, labels: Sequence[str]) -> list[dict[str, Any]]:
    """Labels by cosine similarity with the text, highest first (vectors are unit length)."""
    scores = (label_vectors.float() @ text.float()).tolist()
    ranked = sorted(zip(labels, scores, strict=True), key=lambda pair: -pair[1])
    return [{"label": label, "score": round(score, DECIMALS)} for label, score in ranked]


def text_response(item: TokenizedRequest, vectors: torch.Tensor) -> dict[str, Any]:
    """The JSON body for one request from its rows of the batch output (texts, then hypotheses)."""
    request = item.request
    if request.labels is not None:
        return {"labels": rank_labels(vectors[0], vectors[1:], request.labels), "truncated": item.truncated[0]}
    # rounded by torch, not by round() per value: 267 us a vector that way (docs/performance.md); + 0.0: no "-0.0"
    rows = (vectors.double().round(decimals=DECIMALS) + 0.0).tolist()
    if request.single:
        return {"embedding": rows[0], "truncated": item.truncated[0]}
    # tokens: each text's count from the tokenizer (special tokens included), the usage the OpenAI route reports
    return {"embeddings": rows, "truncated": list(item.truncated), "tokens": [len(ids) for ids in item.ids[:len(request.texts)]]}
