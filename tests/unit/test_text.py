"""handlers.text (payload -> texts -> ids -> padded batch -> embeddings), TextSettings, int8 and
the minilm weight selection: pure functions, no server, no real model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from handlers.config import TextSettings, parse_settings
from handlers.errors import EmptyPayload, InvalidPayload, PayloadTooLarge, UndecodableInput, UnsupportedMediaType
from handlers.quantization import quantize_int8
from handlers.text import (
    DECIMALS,
    TextRequest,
    TokenizedRequest,
    check_request_tokens,
    chunk_bounds,
    extract_request,
    hypotheses,
    length_chunks,
    mean_pool,
    pad_sorted,
    parse_raw,
    rank_labels,
    text_response,
    tokenize_request,
    truncate_ids,
)
from models.minilm import UNUSED, WeightMappingError, select_tensors

LIMITS = {"max_texts": 3, "max_chars": 20}


def extract(request: dict, default_labels: tuple[str, ...] = ()) -> TextRequest:
    return extract_request(request, LIMITS["max_texts"], LIMITS["max_chars"], default_labels)


# ---- payloads ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "request_, expected",
    [
        ({"body": "hello"}, TextRequest(("hello",))),
        ({"body": bytearray("héllo ☃".encode())}, TextRequest(("héllo ☃",))),
        ({"data": b"from a form"}, TextRequest(("from a form",))),
        ({"body": {"text": "one"}}, TextRequest(("one",))),
        ({"body": {"texts": ["a", "b"]}}, TextRequest(("a", "b"), single=False)),
        ({"body": {"texts": ["only"]}}, TextRequest(("only",), single=False)),
        ({"body": {"text": "t", "labels": ["x", "y"]}}, TextRequest(("t",), labels=("x", "y"))),
        # JSON TorchServe could not parse arrives as bytes; a valid object in bytes is read as JSON
        ({"body": b' {"text": "raw json"}'}, TextRequest(("raw json",))),
    ],
    ids=repr,
)
def test_accepted_payloads(request_, expected):
    assert extract(request_) == expected


def test_empty_labels_ask_for_the_configured_defaults():
    assert extract({"body": {"text": "t", "labels": []}}, ("a", "b")).labels == ("a", "b")
    with pytest.raises(EmptyPayload, match="no default labels"):
        extract({"body": {"text": "t", "labels": []}})


@pytest.mark.parametrize(
    "request_, error, message",
    [
        ({}, UnsupportedMediaType, "Content-Type"),
        ({"body": None}, UnsupportedMediaType, "no text"),
        ({"body": b"\xff\xfeabc"}, UndecodableInput, "UTF-8"),
        ({"body": bytearray(b"caf\xe9")}, UndecodableInput, "byte 3"),
        ({"body": b'{"text": "unterminated'}, InvalidPayload, "does not parse"),
        ({"body": ""}, EmptyPayload, "empty"),
        ({"body": " \n\t"}, EmptyPayload, "empty"),
        ({"body": b""}, EmptyPayload, "empty"),
        ({"body": ["a", "b"]}, InvalidPayload, "a JSON array is not a request"),
        ({"body": 42}, InvalidPayload, "a JSON number is not a request"),
        ({"body": {}}, InvalidPayload, 'exactly one of "text" and "texts"'),
        ({"body": {"text": "a", "texts": ["b"]}}, InvalidPayload, "exactly one"),
        ({"body": {"txt": "a"}}, InvalidPayload, "unknown key"),
        ({"body": {"text": 5}}, InvalidPayload, '"text" must be a string, got a JSON number'),
        ({"body": {"texts": {"a": 1}}}, InvalidPayload, '"texts" must be a list of strings, got a JSON object'),
        ({"body": {"text": None}}, InvalidPayload, "got a JSON null"),
        ({"body": {"text": ["a"]}}, InvalidPayload, "must be a string"),
        ({"body": {"text": ""}}, EmptyPayload, '"text" is empty'),
        ({"body": {"texts": "a"}}, InvalidPayload, '"texts" must be a list'),
        ({"body": {"texts": []}}, EmptyPayload, "empty list"),
        ({"body": {"texts": ["a", 1]}}, InvalidPayload, r'"texts\[1\]" must be a string'),
        ({"body": {"texts": ["a", "  "]}}, EmptyPayload, r'"texts\[1\]" is empty'),
        ({"body": {"texts": ["a"] * 4}}, PayloadTooLarge, "4 items; the limit is 3"),
        ({"body": {"text": "x" * 21}}, PayloadTooLarge, "21 characters; the limit is 20"),
        ({"body": "x" * 21}, PayloadTooLarge, "the limit is 20"),
        ({"body": {"texts": ["a"], "labels": ["b"]}}, InvalidPayload, 'not with "texts"'),
        ({"body": {"text": "a", "labels": "sports"}}, InvalidPayload, '"labels" must be a list'),
        ({"body": {"text": "a", "labels": ["ok", ""]}}, EmptyPayload, r'"labels\[1\]" is empty'),
        ({"body": {"text": "a", "labels": list("abcd")}}, PayloadTooLarge, '"labels" has 4 items'),
        ({"body": {"text": "a\x00b"}}, InvalidPayload, r'"text" contains a NUL character \(U\+0000\) at position 1'),
        ({"body": "a\x00b"}, InvalidPayload, "NUL character"),
        ({"body": {"texts": ["ok", "\x00"]}}, InvalidPayload, r'"texts\[1\]" contains a NUL'),
        ({"body": {"text": "a\ud800b"}}, UndecodableInput, r'"text" is not valid Unicode \(surrogates not allowed at position 1\)'),
        ({"body": {"text": "a", "labels": ["\udfff"]}}, UndecodableInput, r'"labels\[0\]" is not valid Unicode'),
    ],
    ids=repr,
)
def test_rejected_payloads_name_the_problem(request_, error, message):
    with pytest.raises(error, match=message) as caught:
        extract(request_)
    assert caught.value.to_body()["detail"]


def test_json_nested_too_deeply_to_parse_is_a_400():
    """json.loads raises RecursionError, not JSONDecodeError, on a 100000-deep array."""
    deep = b'{"text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(InvalidPayload, match="nested too deeply"):
        extract({"body": deep})


@pytest.mark.parametrize(
    "body, declared_json, expected",
    [
        (b'["a", "b"', False, '["a", "b"'),  # no JSON Content-Type: a text that starts with "["
        (b'{"text": "a"}', False, {"text": "a"}),  # ... but one that starts with "{" is read as JSON
        (b'["a", "b"]', True, ["a", "b"]),
        (b'"a"', True, "a"),
        (b'\xef\xbb\xbf{"text": "a"}', True, {"text": "a"}),  # a byte order mark, which TorchServe's json.loads refuses
        (b'\xef\xbb\xbf{"text": "a"}', False, {"text": "a"}),
        (b"\xef\xbb\xbfplain", False, "plain"),
        (b" \n", True, " \n"),  # blank: refused as empty by the checks, not as JSON that does not parse
    ],
)
def test_parse_raw_reads_a_declared_json_body_as_json(body, declared_json, expected):
    assert parse_raw(body, declared_json) == expected


def test_an_empty_body_declared_json_is_empty_not_malformed():
    with pytest.raises(EmptyPayload):
        extract_request({"body": b""}, LIMITS["max_texts"], LIMITS["max_chars"], declared_json=True)


@pytest.mark.parametrize("body, message", [(b'["a", "b"', "does not parse as JSON"), (b"[" * 100_000 + b"]" * 100_000, "nested too deeply")])
def test_a_declared_json_body_that_does_not_parse_is_refused(body, message):
    with pytest.raises(InvalidPayload, match=message):
        extract_request({"body": body}, LIMITS["max_texts"], LIMITS["max_chars"], declared_json=True)


# ---- tokens ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "ids, max_tokens, expected",
    [
        ([101, 5, 6, 102], 4, ((101, 5, 6, 102), False)),
        ([101, 5, 6, 102], 10, ((101, 5, 6, 102), False)),
        ([101, 5, 6, 7, 102], 4, ((101, 5, 6, 102), True)),
        ([101, 5, 6, 7, 102], 2, ((101, 102), True)),
    ],
)
def test_truncate_keeps_the_closing_token(ids, max_tokens, expected):
    assert truncate_ids(ids, max_tokens) == expected


def test_hypotheses_use_the_template():
    assert hypotheses(["sports", "big cats"], "About {label}!") == ("About sports!", "About big cats!")


def fake_tokenizer(texts, truncation, verbose):
    """Word count -> ids: [CLS]=1, one id per word (its length), [SEP]=2."""
    assert truncation is False and verbose is False
    return {"input_ids": [[1, *[len(word) for word in text.split()], 2] for text in texts]}


def test_tokenize_request_appends_hypotheses_and_flags_only_texts():
    request = TextRequest(("one two three four",), labels=("a", "bb"))
    item = tokenize_request(fake_tokenizer, request, "is {label}", max_tokens=4, chars_per_token=100)
    assert item.ids == ((1, 3, 3, 2), (1, 2, 1, 2), (1, 2, 2, 2))
    assert item.truncated == (True,)


@pytest.mark.parametrize("text, ids, truncated", [
    ("aa bb", (1, 2, 2, 2), False),                 # 5 characters: under the budget of 4 x 2
    ("aaa bbbb", (1, 3, 4, 2), False),              # exactly the budget
    ("aa bb ccccc", (1, 2, 2, 2), True),            # cut to "aa bb cc" before tokenizing, then to 4 ids
    ("aa" + " " * 1000 + "bb", (1, 2, 2), True),   # what lies past the budget is never tokenized
])
def test_texts_are_cut_to_a_character_budget_before_tokenizing(text, ids, truncated):
    seen = []

    def tokenizer(texts, truncation, verbose):
        seen.extend(texts)
        return fake_tokenizer(texts, truncation, verbose)

    item = tokenize_request(tokenizer, TextRequest((text,)), "{label}", max_tokens=4, chars_per_token=2)
    assert max(len(t) for t in seen) <= 8
    assert item.ids == (ids,) and item.truncated == (truncated,)


# ---- batches -----------------------------------------------------------------------------
def test_pad_sorted_pads_to_the_longest_in_the_batch_and_restores_order():
    batch = pad_sorted([(1, 2), (1, 2, 3, 4), (1,)], pad_id=0)
    assert batch["input_ids"].tolist() == [[1, 2, 3, 4], [1, 2, 0, 0], [1, 0, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]]
    assert batch["input_ids"][batch["restore"]].tolist() == [[1, 2, 0, 0], [1, 2, 3, 4], [1, 0, 0, 0]]


@pytest.mark.parametrize("size, widths", [(1, [4, 2, 2, 1]), (2, [4, 2]), (3, [4, 1]), (10, [4])])
def test_length_chunks_trim_each_chunk_to_its_longest(size, widths):
    batch = pad_sorted([(1, 2, 3, 4), (1, 2), (5, 6), (7,)], pad_id=0)
    chunks = list(length_chunks(batch["input_ids"], batch["attention_mask"], size))
    assert [ids.shape[1] for ids, _ in chunks] == widths
    assert torch.equal(torch.cat([ids[:, :1] for ids, _ in chunks]), batch["input_ids"][:, :1])
    assert all(mask[:, -1].any() for _, mask in chunks)


@pytest.mark.parametrize("lengths, positions, bounds", [
    ([256] * 4, 512, [(0, 2, 256), (2, 4, 256)]),                   # rows x width within the positions
    ([256, 10, 10, 10], 2048, [(0, 1, 256), (1, 4, 10)]),            # a long text pads no short one
    ([100, 60, 49, 40], 2048, [(0, 2, 100), (2, 4, 49)]),            # no row under half the chunk's longest
    ([300], 256, [(0, 1, 300)]),                                     # one row always goes
])
def test_chunk_bounds_keep_padding_small(lengths, positions, bounds):
    assert chunk_bounds(lengths, 64, positions) == bounds


def test_chunk_bounds_never_compute_much_more_than_twice_the_tokens():
    """Whatever the mix of lengths (sorted, as pad_sorted sorts them), padding at most doubles a chunk."""
    generator = torch.Generator().manual_seed(0)
    for _ in range(200):
        lengths = sorted(torch.randint(2, 257, (64,), generator=generator).tolist(), reverse=True)
        for start, end, width in chunk_bounds(lengths, 64, 2048):
            assert (end - start) * width <= max(2048, width)
            assert (end - start) * width <= 2 * sum(lengths[start:end])


def item_of(lengths: list[int]) -> TokenizedRequest:
    return TokenizedRequest(TextRequest(("t",) * len(lengths)), tuple((1,) * n for n in lengths), (False,) * len(lengths))


@pytest.mark.parametrize("lengths", [[256] * 16, [20] * 64, [256] + [10] * 63])
def test_requests_within_the_token_budget_pass(lengths):
    check_request_tokens(item_of(lengths), 4096, 64, 2048)


@pytest.mark.parametrize("lengths, total", [([256] * 17, 4352), ([256] * 64, 16384)])
def test_a_request_over_the_token_budget_is_a_413_naming_the_setting(lengths, total):
    with pytest.raises(PayloadTooLarge) as caught:
        check_request_tokens(item_of(lengths), 4096, 64, 2048)
    assert f"comes to {total} tokens" in caught.value.detail and "max_request_tokens (4096)" in caught.value.detail


def test_the_token_budget_counts_padding_as_the_encoder_computes_it():
    """128, then 30 texts of 65 (not under half of 128): 2,078 tokens, but the first chunk, 16 rows
    of 128, pads 15 of them: 2,048 + 15 x 65 = 3,023 positions computed."""
    lengths = [128] + [65] * 30
    with pytest.raises(PayloadTooLarge, match="comes to 3023 tokens"):
        check_request_tokens(item_of(lengths), 2500, 64, 2048)


def test_mean_pool_ignores_padding_and_normalises():
    hidden = torch.tensor([[[3.0, 0.0], [1.0, 0.0], [100.0, 100.0]], [[0.0, 2.0], [9.0, 9.0], [9.0, 9.0]]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    pooled = mean_pool(hidden, mask)
    assert torch.allclose(pooled, torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    assert pooled.dtype == torch.float32
    assert torch.allclose(mean_pool(hidden.half(), mask), pooled)


def test_rank_labels_sorts_by_cosine():
    text = torch.tensor([1.0, 0.0])
    vectors = torch.tensor([[0.0, 1.0], [1.0, 0.0], [-1.0, 0.0], [0.6, 0.8]])
    ranked = rank_labels(text, vectors, ["b", "a", "z", "c"])
    assert ranked == [{"label": "a", "score": 1.0}, {"label": "c", "score": 0.6}, {"label": "b", "score": 0.0},
                      {"label": "z", "score": -1.0}]


@pytest.mark.parametrize(
    "request_, truncated, expected",
    [
        (TextRequest(("t",)), (True,), {"embedding": [0.6, 0.8], "truncated": True}),
        (TextRequest(("t", "u"), single=False), (False, True),
         {"embeddings": [[0.6, 0.8], [-0.0, 1.0]], "truncated": [False, True], "tokens": [0, 0]}),
        (TextRequest(("t",), labels=("up", "right")), (False,),
         {"labels": [{"label": "up", "score": 0.8}, {"label": "right", "score": 0.6}], "truncated": False}),
    ],
    ids=["text", "texts", "zero-shot"],
)
def test_text_response_shapes(request_, truncated, expected):
    vectors = torch.tensor([[0.6, 0.8], [-0.0, 1.0], [1.0, 0.0]])[: len(request_.texts) + len(request_.labels or ())]
    item = TokenizedRequest(request_, ids=((),) * len(vectors), truncated=truncated)
    body = text_response(item, vectors)
    assert body == expected
    assert "-0.0" not in repr(body)


def test_embeddings_are_rounded_as_round_would():
    """One torch call rounds the vectors (round() per value cost 267 us a vector): the same numbers."""
    vectors = torch.nn.functional.normalize(torch.randn(16, 384, generator=torch.Generator().manual_seed(0)), dim=1)
    item = TokenizedRequest(TextRequest(tuple("abcdefghijklmnop"), single=False), ids=((),) * 16, truncated=(False,) * 16)
    expected = [[round(value, DECIMALS) + 0.0 for value in row] for row in vectors.tolist()]
    assert text_response(item, vectors)["embeddings"] == expected


# ---- settings ----------------------------------------------------------------------------
def test_text_settings_defaults_and_yaml_lists():
    assert parse_settings(TextSettings, None) == TextSettings()
    settings = parse_settings(TextSettings, {"labels": ["sports", "finance"], "quantize": "int8", "max_tokens": 128})
    assert settings.labels == ("sports", "finance") and settings.quantize == "int8" and settings.max_tokens == 128
    hash(settings)


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"labels": "sports"}, "'labels' must be a list of strings"),
        ({"labels": ["sports", 3]}, "'labels' must be a list of strings"),
        ({"labels": ["sports", " "]}, "non-empty"),
        ({"quantize": "int4"}, "quantize"),
        ({"quantize": "int8", "precision": "bf16"}, "int8 runs in fp32"),
        ({"max_tokens": 1}, "max_tokens"),
        ({"max_texts": 0}, "max_texts"),
        ({"chunk_texts": 0}, "chunk_texts"),
        ({"chunk_tokens": 0}, "chunk_tokens"),
        ({"max_request_tokens": 255}, "max_request_tokens .255. must be at least max_tokens"),
        ({"max_chars": 0}, "max_chars"),
        ({"hypothesis_template": "About it."}, "{label}"),
        ({"hypothesis_template": "{label} and {other}"}, "only {label}"),
        ({"topk": 5}, "unknown handler setting"),
        ({"max_token": 128}, "'max_token'"),
    ],
    ids=repr,
)
def test_text_settings_reject_bad_values(raw, message):
    with pytest.raises(ValueError, match=message):
        parse_settings(TextSettings, raw)


# ---- int8 and weights -----------------------------------------------------------------------
def test_quantize_int8_replaces_linear_layers_and_stays_close():
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8))
    quantized = quantize_int8(module, torch.device("cpu"))
    assert not any(type(layer) is nn.Linear for layer in quantized.modules())
    assert type(module[0]) is nn.Linear, "the original module is left as it was"
    inputs = torch.randn(4, 16)
    assert torch.nn.functional.cosine_similarity(quantized(inputs), module(inputs)).min() > 0.99


def test_quantize_int8_refuses_a_gpu():
    with pytest.raises(ValueError, match="CPU only"):
        quantize_int8(nn.Linear(2, 2), torch.device("cuda:0"))


def test_select_tensors_drops_only_the_known_unused_ones():
    target = {"embeddings.word_embeddings.weight": torch.zeros(2), "encoder.w": torch.zeros(1)}
    packaged = {**target, "embeddings.position_ids": torch.arange(3), "pooler.dense.weight": torch.zeros(1)}
    assert list(select_tensors(packaged, target, UNUSED)) == list(target)
    with pytest.raises(WeightMappingError, match="unexpected"):
        select_tensors({**packaged, "classifier.weight": torch.zeros(1)}, target, UNUSED)
    with pytest.raises(WeightMappingError, match="missing"):
        select_tensors({"encoder.w": torch.zeros(1)}, target, UNUSED)
