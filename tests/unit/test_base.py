"""handlers.base's pure parts: the batch sizes a worker warms and pads to."""

from __future__ import annotations

import pytest

from handlers.base import bucket_sizes, padded_size, warmup_sizes


@pytest.mark.parametrize("batch, expected", [(1, (1,)), (2, (1, 2)), (4, (1, 2, 4)), (6, (1, 2, 4, 6)), (64, (1, 2, 4, 8, 16, 32, 64))])
def test_bucket_sizes(batch, expected):
    assert bucket_sizes(batch) == expected


@pytest.mark.parametrize("count, expected", [(1, 1), (2, 2), (3, 4), (5, 6), (6, 6), (7, 7)])
def test_padded_size(count, expected):
    """Up to the next bucket of batchSize 6; beyond the largest (an in-process caller's batch), unpadded."""
    assert padded_size(count, (1, 2, 4, 6)) == expected


@pytest.mark.parametrize(
    "batch, pad, expected",
    [
        (4, False, (4, 4, 3, 3, 2, 2, 1, 1)),  # every size a batch can have, largest first, twice each
        (1, False, (1, 1)),
        (8, True, (8, 8, 4, 4, 2, 2, 1, 1)),  # only the sizes batches are padded to
        (6, True, (6, 6, 4, 4, 2, 2, 1, 1)),
    ],
)
def test_warmup_sizes(batch, pad, expected):
    assert warmup_sizes(batch, pad) == expected
