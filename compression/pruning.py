"""Removing layers from a model in place, by reference, and putting them back.

The sweep visits dozens of states; copying the model for each would cost memory and time, so a
state is entered by swapping the encoder's ``ModuleList`` for the kept layers' modules.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

from torch import nn

from .architectures import Adapter


def kept_layers(num_layers: int, removed: Iterable[int]) -> list[int]:
    gone = set(removed)
    return [i for i in range(num_layers) if i not in gone]


@contextlib.contextmanager
def layers_removed(
    model: nn.Module, adapter: Adapter, all_layers: list[nn.Module], removed: Iterable[int]
) -> Iterator[list[int]]:
    """Within the block, ``model`` runs without the original layers in ``removed``.

    Args:
        all_layers: the model's full layer list, taken once before any removal.

    Yields:
        The original indices of the kept layers, in order.
    """
    kept = kept_layers(len(all_layers), removed)
    adapter.set_layers(model, [all_layers[i] for i in kept])
    try:
        yield kept
    finally:
        adapter.set_layers(model, all_layers)
