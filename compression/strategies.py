"""Strategies: small objects that pick the next layer to remove from a state, registered by id.

Each takes the current state (the original indices removed so far) and what the sweep has
measured (:class:`Measurements`, answered from its caches). Ties always break toward the higher
layer index (method.md). :data:`BUILDERS` maps every strategy the sweep walks from the spec alone
to the function that builds it, so adding a strategy is one entry; the two fusion strategies are
built from their fitted models instead (:mod:`layerfuse.compression.fusion`).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from .catalogue import BLOCK_INFLUENCE, DROP_TOP, FUSION_IDS, RANDOM, SIGNAL_IDS, SIGNAL_INFO
from .report import Metrics
from .spec import Options

State = frozenset[int]
EMPTY: State = frozenset()


class Measurements(Protocol):
    """What a strategy may ask of the sweep about a state (measured once, then cached)."""

    @property
    def num_layers(self) -> int: ...

    def remaining(self, state: State) -> list[int]: ...

    def state_signals(self, state: State) -> dict[int, dict[str, float]]:
        """``{layer: {signal id: value}}`` for every layer left in ``state``."""
        ...

    def state_metrics(self, state: State) -> dict[str, Metrics | None]:
        """``{"validation": metrics, "test": metrics or None}`` of the model at ``state``."""
        ...

    def evaluated(self, state: State) -> bool:
        """Whether ``state`` has been evaluated already (its metrics cost nothing)."""
        ...


class Strategy(Protocol):
    id: str

    def start(self) -> None:
        """Called before a walk; resets any per-walk state (random generators)."""

    def choose(self, state: State, sweep: Measurements) -> int: ...


def pick(scores: dict[int, float], highest: bool) -> int:
    """The layer with the lowest (or highest) score; ties go to the higher layer index."""
    best = max(scores.values()) if highest else min(scores.values())
    return max(layer for layer, value in scores.items() if value == best)


@dataclass
class SignalStrategy:
    """Removes the layer that one signal (or block influence) marks as least needed."""

    signal: str
    id: str = ""

    def __post_init__(self) -> None:
        self.id = self.signal
        info = SIGNAL_INFO.get(self.signal)
        self.highest = info is not None and info.prune_first == "highest"

    def start(self) -> None:
        pass

    def choose(self, state: State, sweep: Measurements) -> int:
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

    def choose(self, state: State, sweep: Measurements) -> int:
        return self._rng.choice(sweep.remaining(state))


@dataclass
class DropTopStrategy:
    id: str = DROP_TOP

    def start(self) -> None:
        pass

    def choose(self, state: State, sweep: Measurements) -> int:
        return max(sweep.remaining(state))


StrategyBuilder = Callable[[Options], list[Strategy]]


def _signal(signal: str) -> StrategyBuilder:
    return lambda options: [SignalStrategy(signal)]


BUILDERS: dict[str, StrategyBuilder] = {
    **{sid: _signal(sid) for sid in SIGNAL_IDS},
    RANDOM: lambda options: [RandomStrategy(i, options.seed) for i in range(options.random_seeds)],
    DROP_TOP: lambda options: [DropTopStrategy()],
    # ShortGPT's block influence: the lowest 1 - cos(input, output) goes first.
    BLOCK_INFLUENCE: _signal(BLOCK_INFLUENCE),
}


def build_strategies(ids: Iterable[str], options: Options) -> list[Strategy]:
    """The strategies the sweep walks for ``ids``, in their order (``random``: one per seed).

    Fusion ids are skipped: their strategies exist only once the fusion models are fitted.
    """
    return [s for sid in ids if sid not in FUSION_IDS for s in BUILDERS[sid](options)]
