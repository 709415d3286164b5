"""CPU dropout from 16-bit masks is dropout: the rate, the scale, the gradient, the seed."""

from __future__ import annotations

import math

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from layerfuse.compression.evaluation import EvalSet
from layerfuse.compression.fast_dropout import cpu_dropout, dropout
from layerfuse.compression.training import train
from tests.compression.helpers import FP32, encoded_rows, load_eager

CPU = torch.device("cpu")


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_each_element_is_dropped_with_probability_p_and_the_rest_scaled_to_keep_the_mean(p):
    torch.manual_seed(0)
    n = 1 << 20
    x = torch.rand(n) + 0.5  # no zeros, so a zero in the output is a dropped element
    out = dropout(x, p)
    dropped = out == 0
    kept_scale = 65536 / (65536 - round(p * 65536))
    torch.testing.assert_close(out[~dropped], x[~dropped] * kept_scale)
    # Each of the four int16 lanes of a 64-bit draw drops at the rate p (a lane with a fixed bit
    # would not); 5 standard deviations of a binomial over n/4 elements.
    tolerance = 5 * math.sqrt(p * (1 - p) / (n // 4))
    for lane in range(4):
        assert abs(dropped[lane::4].float().mean().item() - p) < tolerance
    # Kept elements are scaled by 1 / (1 - p'), so the mean is the input's (5 standard errors).
    assert abs(out.mean().item() - x.mean().item()) < 5 * out.std().item() / math.sqrt(n)


def test_the_gradient_passes_where_kept_scaled_and_bf16_stays_bf16():
    torch.manual_seed(1)
    x = (torch.rand(64, 384) + 0.5).bfloat16().requires_grad_()
    out = dropout(x, 0.1)
    assert out.dtype == torch.bfloat16
    out.sum().backward()
    kept = out.detach() != 0
    scale = torch.tensor(65536 / (65536 - 6554), dtype=torch.bfloat16)
    assert torch.equal(x.grad, torch.where(kept, scale, 0))


def test_the_same_seed_draws_the_same_mask_and_evaluation_is_untouched():
    x = torch.rand(4096) + 0.5
    torch.manual_seed(7)
    first = dropout(x, 0.1)
    torch.manual_seed(7)
    assert torch.equal(dropout(x, 0.1), first)
    assert dropout(x, 0.1, training=False) is x
    # Zero and one are native dropout's: nothing dropped, everything dropped.
    assert torch.equal(dropout(x, 0.0), x)
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))


def test_every_dropout_of_a_training_forward_uses_the_int16_masks(tiny_classifier):
    """``nn.Dropout`` modules and the eager attention's functional dropout both go through
    ``cpu_dropout``: no native Bernoulli mask is drawn, yet training-mode outputs vary by seed."""
    model, tokenizer, _ = load_eager(tiny_classifier)
    batch = encoded_rows(tokenizer, n=8).sorted_batches(8)[0]
    model.train()

    def bernoulli_calls(context) -> tuple[int, torch.Tensor]:
        with profile(activities=[ProfilerActivity.CPU]) as prof, context:
            logits = model(**batch.inputs).logits
        return sum(e.count for e in prof.key_averages() if "bernoulli" in e.key), logits

    native, _ = bernoulli_calls(torch.enable_grad())
    assert native > 0, "the check needs a model with dropout"
    torch.manual_seed(3)
    replaced, logits = bernoulli_calls(cpu_dropout(CPU))
    assert replaced == 0
    torch.manual_seed(3)
    _, again = bernoulli_calls(cpu_dropout(CPU))
    torch.manual_seed(4)
    _, other = bernoulli_calls(cpu_dropout(CPU))
    assert torch.equal(logits, again) and not torch.equal(logits, other)
    model.eval()
    plain = model(**batch.inputs).logits
    with cpu_dropout(CPU):
        assert torch.equal(model(**batch.inputs).logits, plain)


def test_seeded_training_is_reproducible_with_int16_dropout(tiny_classifier):
    _, tokenizer, _ = load_eager(tiny_classifier)
    data = encoded_rows(tokenizer, n=32)
    validation = EvalSet(encoded_rows(tokenizer, n=24, seed=5), 64)
    settings = {"epochs": 2, "learning_rate": 5e-3, "batch_size": 8}
    # Each epoch's validation loss: the weights after that epoch's steps, masks included.
    histories = [
        train(load_eager(tiny_classifier)[0], data, validation, FP32, seed=seed, **settings).history
        for seed in (0, 0, 1)
    ]
    assert histories[0] == histories[1]
    assert histories[0][1:] != histories[2][1:]
