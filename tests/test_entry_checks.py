"""Entry-point checks (issue 19, item 10.5): an empty batch is an EmptyBatchError, a context
given to an unconditional model is a ValueError, instead of unnamed errors deep in a layer or a
context silently ignored."""

import pytest
import torch

from flowforge.models import maf, nsf, realnvp
from flowforge.transforms import EmptyBatchError
from flowforge.transforms.base import check_inputs, takes_context


def test_takes_context_finds_conditioners_and_bases():
    assert not takes_context(realnvp(3))
    assert takes_context(realnvp(3, context_features=2))
    assert takes_context(maf(3, layers=1, context_features=2))
    assert not takes_context(nsf(3, layers=1))


def test_empty_batch_is_named():
    with pytest.raises(EmptyBatchError, match="'x' has no samples"):
        check_inputs(torch.zeros(0, 3), None, uses_context=False)
    with pytest.raises(EmptyBatchError):
        check_inputs(torch.tensor(1.0), None, uses_context=False)
    check_inputs(torch.zeros(1, 3), None, uses_context=False)  # one sample is fine


def test_context_to_an_unconditional_model_is_named():
    flow = realnvp(3)
    with pytest.raises(ValueError, match="'context' was given to a model that takes none"):
        check_inputs(torch.zeros(2, 3), torch.zeros(2, 1), takes_context(flow))
    check_inputs(
        torch.zeros(2, 3), torch.zeros(2, 2), takes_context(realnvp(3, context_features=2))
    )
