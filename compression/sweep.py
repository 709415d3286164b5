"""The sweep engine: walks strategies' trajectories and owns the per-state caches.

A state (the set of original layers removed) fully determines the model, so its signals and its
evaluation are measured once and shared by every strategy whose trajectory passes through it.
The caches can be checkpointed to a JSON file so a redelivered job resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from .architectures import Adapter
from .batching import Batch
from .device import Runtime
from .evaluation import EvalSet
from .pruning import layers_removed
from .report import CurvePoint, Metrics
from .signals import measure_state
from .strategies import EMPTY, State, Strategy

OnWork = Callable[[float], None]
Signals = dict[State, dict[int, dict[str, float]]]
StateMetrics = dict[State, dict[str, Metrics | None]]


def _no_progress(fraction: float) -> None:
    pass


@dataclass
class Step:
    state: State  # before the removal
    layer: int  # original index removed
    after: State


@dataclass
class Trajectory:
    strategy: str
    steps: list[Step]

    @property
    def removal_order(self) -> list[int]:
        return [s.layer for s in self.steps]

    def states(self) -> list[State]:
        return [EMPTY] + [s.after for s in self.steps]


def _key(state: State) -> str:
    return ",".join(map(str, sorted(state)))


def _state(key: str) -> State:
    return frozenset(int(x) for x in key.split(",") if x)


class Sweep:
    """Answers "what are the signals / metrics at this state?", measuring each state once.

    :meth:`walk` and :meth:`probe` take ``on_work``: called with a fraction (0..1) of the
    current measurement after each batch, it is the progress and cancellation hook.

    Args:
        checkpoint: JSON file the caches are saved to after every new state, and loaded from.
    """

    def __init__(
        self,
        model: nn.Module,
        adapter: Adapter,
        calibration: list[Batch],
        validation: EvalSet,
        test: EvalSet | None,
        runtime: Runtime,
        seed: int,
        checkpoint: Path | None = None,
    ):
        self.model = model
        self.adapter = adapter
        self.all_layers = list(adapter.layers(model))
        self.num_layers = len(self.all_layers)
        self.calibration = calibration
        self.validation = validation
        self.test = test
        self.runtime = runtime
        self.seed = seed
        self._on_work: OnWork = _no_progress
        self.checkpoint = checkpoint
        self.signals: Signals = {}
        self.metrics: StateMetrics = {}
        self.measurements = 0  # states actually measured (signals or metrics), for the report
        self.cache_hits = 0
        if checkpoint is not None and checkpoint.is_file():
            self.signals, self.metrics = _load(checkpoint)

    def remaining(self, state: State) -> list[int]:
        return [i for i in range(self.num_layers) if i not in state]

    def evaluated(self, state: State) -> bool:
        return state in self.metrics

    def remember(self, state: State, metrics: dict[str, Metrics | None]) -> None:
        """Use ``metrics`` measured elsewhere (the baseline) for ``state``, unless cached."""
        self.metrics.setdefault(state, metrics)

    @contextlib.contextmanager
    def _reporting(self, on_work: OnWork) -> Iterator[None]:
        self._on_work = on_work
        try:
            yield
        finally:
            self._on_work = _no_progress

    def state_signals(self, state: State) -> dict[int, dict[str, float]]:
        if state in self.signals:
            self.cache_hits += 1
            return self.signals[state]
        with layers_removed(self.model, self.adapter, self.all_layers, state) as kept:
            self.signals[state] = measure_state(
                self.model,
                self.adapter,
                kept,
                self.calibration,
                self.runtime,
                self.seed,
                self._on_work,
            )
        self.measurements += 1
        if self.checkpoint is not None:
            _save(self.checkpoint, self.signals, self.metrics)
        return self.signals[state]

    def state_metrics(self, state: State) -> dict[str, Metrics | None]:
        if state in self.metrics:
            self.cache_hits += 1
            return self.metrics[state]
        with layers_removed(self.model, self.adapter, self.all_layers, state):
            result: dict[str, Metrics | None] = {
                "validation": self.validation.evaluate(self.model, self.runtime, self._on_work),
                "test": self.test.evaluate(self.model, self.runtime) if self.test else None,
            }
        self.metrics[state] = result
        self.measurements += 1
        if self.checkpoint is not None:
            _save(self.checkpoint, self.signals, self.metrics)
        return result

    def walk(
        self,
        strategy: Strategy,
        max_removed: int,
        on_step: Callable[[Trajectory, Step], None] = lambda t, s: None,
        on_work: OnWork = _no_progress,
    ) -> Trajectory:
        """Remove one layer at a time from the full model down to ``max_removed`` removed.

        Every state the walk leaves is measured (signals), so each step can become a fusion
        row; every state it reaches is evaluated.
        """
        with self._reporting(on_work):
            return self._walk(strategy, max_removed, on_step)

    def _walk(
        self, strategy: Strategy, max_removed: int, on_step: Callable[[Trajectory, Step], None]
    ) -> Trajectory:
        strategy.start()
        trajectory = Trajectory(strategy.id, [])
        state = EMPTY
        self.state_metrics(state)
        while len(state) < max_removed:
            self.state_signals(state)
            layer = strategy.choose(state, self)
            step = Step(state, layer, state | {layer})
            self.state_metrics(step.after)
            trajectory.steps.append(step)
            on_step(trajectory, step)
            state = step.after
        return trajectory

    def probe(self, on_work: OnWork = _no_progress) -> list[Step]:
        """The leave-one-out probe: every single-layer removal from the full model."""
        with self._reporting(on_work):
            self.state_signals(EMPTY)
            steps = [Step(EMPTY, layer, frozenset({layer})) for layer in range(self.num_layers)]
            for step in steps:
                self.state_metrics(step.after)
        return steps

    def curve(self, trajectory: Trajectory) -> list[CurvePoint]:
        """The metrics at every state of ``trajectory``, from k = 0 (all measured by its walk)."""
        return [
            CurvePoint.model_validate(
                {"layers_removed": len(state), "removed": sorted(state), **self.metrics[state]}
            )
            for state in trajectory.states()
        ]


def _save(path: Path, signals: Signals, metrics: StateMetrics) -> None:
    """Both caches as one JSON file, replaced atomically."""
    payload = {
        "signals": {
            _key(s): {str(k): v for k, v in layers.items()} for s, layers in signals.items()
        },
        "metrics": {_key(s): m for s, m in metrics.items()},
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload))
    os.replace(tmp, path)


def _load(path: Path) -> tuple[Signals, StateMetrics]:
    payload = json.loads(path.read_text())
    signals = {
        _state(s): {int(k): v for k, v in layers.items()}
        for s, layers in payload["signals"].items()
    }
    return signals, {_state(s): m for s, m in payload["metrics"].items()}
