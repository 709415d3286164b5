"""Strategies: small objects that pick the next layer to remove from a state.

Each takes the current state (the original indices removed so far) and the sweep, which answers
questions about states (their signals) from its caches. Ties always break toward the higher
layer index (method.md).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from .catalogue import BLOCK_INFLUENCE, DROP_TOP, RANDOM, SIGNAL_INFO

if TYPE_CHECKING:
    from .sweep import State, Sweep


class Strategy(Protocol):
    id: str

    def start(self) -> None:
        """Called before a walk; resets any per-walk state (random generators)."""

    def choose(self, state: State, sweep: Sweep) -> int: ...


def pick(scores: dict[int, float], highest: bool) -> int:
    """The layer with the lowest (or highest) score; ties go to the higher layer index."""
    best = max(scores.values()) if highest else min(scores.values())
    return max(layer for layer, value in scores.items() if value == best)


@dataclass
class SignalStrategy:
    signal: str
    id: str = ""

    def __post_init__(self) -> None:
        self.id = self.signal
        self.highest = SIGNAL_INFO[self.signal].prune_first == "highest"

    def start(self) -> None:
        pass

    def choose(self, state: State, sweep: Sweep) -> int:
        signals = sweep.state_signals(state)
        return pick({layer: values[self.signal] for layer, values in signals.items()}, self.highest)


@dataclass
class RandomStrategy:
    seed_index: int
    base_seed: int
    id: str = ""
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    def __post_init__(self) -> None:
        self.id = f"{RANDOM}/seed-{self.seed_index}"

    def start(self) -> None:
        self._rng = random.Random(self.base_seed * 1000 + self.seed_index)

    def choose(self, state: State, sweep: Sweep) -> int:
        return self._rng.choice(sweep.remaining(state))


@dataclass
class DropTopStrategy:
    id: str = DROP_TOP

    def start(self) -> None:
        pass

    def choose(self, state: State, sweep: Sweep) -> int:
        return max(sweep.remaining(state))


@dataclass
class BlockInfluenceStrategy:
    id: str = BLOCK_INFLUENCE

    def start(self) -> None:
        pass

    def choose(self, state: State, sweep: Sweep) -> int:
        signals = sweep.state_signals(state)
        return pick(
            {layer: values[BLOCK_INFLUENCE] for layer, values in signals.items()}, highest=False
        )
