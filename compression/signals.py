"""The 12 per-layer importance signals of method.md, from one forward and one backward pass.

:func:`measure_state` runs the calibration set through the current model once, with hooks that
collect per-layer statistics into :class:`LayerStats`; every signal is then a small function of
those statistics, registered by its id. Adding a signal means adding one function here (and its
id to :mod:`layerfuse.compression.catalogue`), never another pass over the data.

All statistics ignore padding positions and are accumulated in float32 whatever the autocast.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.feature_selection import mutual_info_classif
from torch import nn

from .architectures import Adapter, attention_heads
from .batching import Batch, attention_slices
from .catalogue import BLOCK_INFLUENCE, SIGNAL_IDS
from .device import Runtime

PCA_COMPONENTS = 16
MAX_CANONICAL_CORRELATION = 0.999
HISTOGRAM_BINS = 256
ATTENTION_BLOCK = 1 << 20  # attention-map elements turned to fp32 at a time


@dataclass
class LayerStats:
    """Everything one calibration pass collects for one layer."""

    weights: torch.Tensor  # all linear weights of the layer, flattened
    seed: int
    valid_tokens: int = 0
    act_sum: float = 0.0  # Σ over valid tokens and units of the intermediate activation
    act_units: int = 0
    act_norm_sum: float = 0.0  # Σ over valid tokens of ‖a‖₂
    act_energy_sum: float = 0.0  # Σ over valid tokens of ‖a‖₂²
    cosine_sum: float = 0.0  # Σ over valid tokens of cos(layer input, layer output)
    attn_max_sum: float = 0.0  # Σ over heads and valid queries of max attention probability
    attn_entropy_sum: float = 0.0  # Σ of entropy / log(#valid keys)
    attn_queries: int = 0  # heads × valid queries (with ≥ 2 valid keys for the entropy)
    pooled_in: list[np.ndarray] = field(default_factory=list)  # (batch, hidden) per batch
    pooled_out: list[np.ndarray] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)
    fisher_sum: float = 0.0  # Σ over micro-batches of Σ_θ (∂L/∂θ)²
    grad_norm_sum: float = 0.0  # Σ over micro-batches of ‖∂L/∂θ‖₂
    micro_batches: int = 0
    grad_mean: list[torch.Tensor] | None = None  # gradient averaged over the calibration set
    params: list[nn.Parameter] = field(default_factory=list)

    def stacked(self, which: str) -> np.ndarray:
        return np.concatenate(getattr(self, which), axis=0)

    @functools.cached_property
    def components_in(self) -> np.ndarray:
        return principal_components(self.stacked("pooled_in"))

    @functools.cached_property
    def components_out(self) -> np.ndarray:
        return principal_components(self.stacked("pooled_out"))


SignalFn = Callable[[LayerStats], float]
REGISTRY: dict[str, SignalFn] = {}


def signal(signal_id: str) -> Callable[[SignalFn], SignalFn]:
    def register(fn: SignalFn) -> SignalFn:
        REGISTRY[signal_id] = fn
        return fn

    return register


@signal("activation-inhibition")
def activation_inhibition(s: LayerStats) -> float:
    return s.act_sum / max(s.act_units, 1)


@signal("activation-intensity")
def activation_intensity(s: LayerStats) -> float:
    return s.act_norm_sum / max(s.valid_tokens, 1)


@signal("activation-energy")
def activation_energy(s: LayerStats) -> float:
    return s.act_energy_sum / max(s.valid_tokens, 1)


def principal_components(x: np.ndarray) -> np.ndarray:
    """Projections on the top principal components, from the covariance's eigendecomposition
    (exact, and several times faster than a randomized SVD at these sizes)."""
    x = x.astype(np.float64)
    x = x - x.mean(axis=0)
    n = min(PCA_COMPONENTS, x.shape[0] - 1, x.shape[1])
    _, vectors = np.linalg.eigh(x.T @ x)  # ascending eigenvalues
    return x @ vectors[:, ::-1][:, :n]


@signal("task-relevance-mi")
def task_relevance_mi(s: LayerStats) -> float:
    x = s.components_out
    y = s.stacked("labels")
    return float(mutual_info_classif(x, y, random_state=s.seed).sum())


def canonical_correlations(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Canonical correlations of two samples (rows are observations), via QR and SVD."""
    qx, _ = np.linalg.qr(x - x.mean(axis=0))
    qy, _ = np.linalg.qr(y - y.mean(axis=0))
    return np.linalg.svd(qx.T @ qy, compute_uv=False)


@signal("redundancy-mi")
def redundancy_mi(s: LayerStats) -> float:
    rho = np.clip(
        canonical_correlations(s.components_in, s.components_out), 0.0, MAX_CANONICAL_CORRELATION
    )
    return float(-0.5 * np.log1p(-(rho**2)).sum())


@signal("gradient-fisher")
def gradient_fisher(s: LayerStats) -> float:
    return s.fisher_sum / max(s.micro_batches, 1)


@signal("gradient-norm")
def gradient_norm(s: LayerStats) -> float:
    return s.grad_norm_sum / max(s.micro_batches, 1)


@signal("gradient-taylor")
def gradient_taylor(s: LayerStats) -> float:
    assert s.grad_mean is not None
    return float(
        sum(
            (p.detach().float() * g).abs().sum() for p, g in zip(s.params, s.grad_mean, strict=True)
        )
    )


@signal("weight-entropy")
def weight_entropy(s: LayerStats) -> float:
    w = s.weights
    counts = torch.histc(w, bins=HISTOGRAM_BINS, min=float(w.min()), max=float(w.max()))
    p = counts[counts > 0] / counts.sum()
    return float(-(p * torch.log2(p)).sum())


@signal("weight-magnitude")
def weight_magnitude(s: LayerStats) -> float:
    return float(s.weights.abs().mean())


@signal("attention-weight")
def attention_weight(s: LayerStats) -> float:
    return s.attn_max_sum / max(s.attn_queries, 1)


@signal("attention-entropy")
def attention_entropy(s: LayerStats) -> float:
    return s.attn_entropy_sum / max(s.attn_queries, 1)


def block_influence(s: LayerStats) -> float:
    """ShortGPT's BI = 1 − mean cosine(input, output) over valid tokens (a baseline's score)."""
    return 1.0 - s.cosine_sum / max(s.valid_tokens, 1)


def linear_weights(layer: nn.Module) -> torch.Tensor:
    return torch.cat(
        [m.weight.detach().float().flatten() for m in layer.modules() if isinstance(m, nn.Linear)]
    )


def _first_tensor(value: object) -> torch.Tensor:
    return value[0] if isinstance(value, tuple) else value  # type: ignore[return-value]


class _Collector:
    """Forward hooks that fold one batch's activations into each layer's :class:`LayerStats`."""

    def __init__(self, adapter: Adapter, layers: list[nn.Module], stats: list[LayerStats]):
        self.mask: torch.Tensor | None = None  # (batch, seq) bool, set before each forward
        self.handles = []
        for layer, st in zip(layers, stats, strict=True):
            self.handles += [
                layer.register_forward_hook(self._on_layer(st), with_kwargs=True),
                adapter.ffn_output_of(layer).register_forward_pre_hook(self._on_activation(st)),
                adapter.self_attention_of(layer).register_forward_hook(self._on_attention(st)),
            ]

    def _current_mask(self) -> torch.Tensor:
        assert self.mask is not None, "set the batch's attention mask before the forward pass"
        return self.mask

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()

    def _on_layer(self, st: LayerStats):
        def hook(module, args, kwargs, output):
            mask = self._current_mask()
            x_in = (args[0] if args else kwargs["hidden_states"]).detach().float()
            x_out = _first_tensor(output).detach().float()  # (batch, seq, hidden)
            m = mask.unsqueeze(-1).float()
            count = m.sum(dim=1).clamp_min(1.0)
            st.pooled_in.append(((x_in * m).sum(dim=1) / count).cpu().numpy())
            st.pooled_out.append(((x_out * m).sum(dim=1) / count).cpu().numpy())
            st.cosine_sum += float(F.cosine_similarity(x_in, x_out, dim=-1)[mask].sum())
            st.valid_tokens += int(mask.sum())

        return hook

    def _on_activation(self, st: LayerStats):
        def hook(module, args):
            a = args[0].detach().float()[self._current_mask()]  # (valid tokens, intermediate)
            st.act_sum += float(a.sum())
            st.act_units += a.numel()
            sq = (a * a).sum(dim=-1)
            st.act_energy_sum += float(sq.sum())
            st.act_norm_sum += float(sq.sqrt().sum())

        return hook

    def _on_attention(self, st: LayerStats):
        def hook(module, args, output):
            probs = output[1]
            if probs is None:
                raise RuntimeError(
                    "attention probabilities are missing: load the model with "
                    "attn_implementation='eager'"
                )
            mask = self._current_mask()
            n_keys = mask.sum(dim=1).float()  # (batch,)
            log_keys = torch.log(n_keys).clamp_min(1e-12)
            # A few examples' maps at a time: each pass over a cache-sized fp32 block instead
            # of the whole batch's (batch, heads, query, key) maps. On MiniLM at max_length
            # 512 (IMDB, 16 micro-batches of 32) a state measurement took 143 s instead of 158;
            # at 128 and below no change was measurable (there a few blocks or one cover it).
            step = max(1, ATTENTION_BLOCK // probs[0].numel())
            for start in range(0, probs.shape[0], step):
                rows = slice(start, start + step)
                block = probs[rows].detach().float()  # (examples, heads, query, key)
                query = mask[rows].unsqueeze(1).expand(-1, block.shape[1], -1)
                st.attn_max_sum += float(block.amax(dim=-1)[query].sum())
                entropy = torch.special.entr(block).sum(dim=-1)  # nats, (examples, heads, query)
                usable = query & (n_keys[rows] > 1)[:, None, None]
                st.attn_entropy_sum += float((entropy / log_keys[rows, None, None])[usable].sum())
                st.attn_queries += int(usable.sum())

        return hook


def measure_state(
    model: nn.Module,
    adapter: Adapter,
    layer_ids: list[int],
    batches: list[Batch],
    runtime: Runtime,
    seed: int,
    on_batch: Callable[[float], None] = lambda fraction: None,
) -> dict[int, dict[str, float]]:
    """All 12 signals plus block influence for each active layer of ``model``.

    Args:
        layer_ids: the original index of each active layer, in order.
        batches: the calibration set as micro-batches; one forward and one backward each.
        on_batch: called with the fraction done after every micro-batch (progress, cancel).

    Returns:
        ``{original layer index: {signal id: value, "block-influence": value}}``.
    """
    layers = list(adapter.layers(model))
    heads = attention_heads(model)
    stats = [_empty_stats(layer, seed) for layer in layers]
    total = sum(len(b) for b in batches)
    collector = _Collector(adapter, layers, stats)
    was_training = model.training
    model.eval()
    try:
        with _gradients_only_for(model, layers):
            for i, batch in enumerate(batches):
                batch = batch.to(runtime.device)
                model.zero_grad(set_to_none=True)
                # The micro-batch's gradient (the unit of the gradient signals), accumulated
                # over slices that keep the saved attention maps small: each slice's summed loss
                # over the micro-batch's size adds up to the micro-batch's mean loss.
                for part in attention_slices(batch, heads):
                    collector.mask = part.inputs["attention_mask"].bool()
                    with runtime.autocast():
                        logits = model(**part.inputs).logits
                    loss = F.cross_entropy(logits.float(), part.labels, reduction="sum")
                    (loss / len(batch)).backward()
                for st in stats:
                    _fold_gradients(st, batch, total)
                on_batch((i + 1) / len(batches))
    finally:
        collector.close()
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    result = {}
    for layer_id, st in zip(layer_ids, stats, strict=True):
        values = {sid: float(REGISTRY[sid](st)) for sid in SIGNAL_IDS}
        values[BLOCK_INFLUENCE] = block_influence(st)
        result[layer_id] = values
    return result


@contextlib.contextmanager
def _gradients_only_for(model: nn.Module, layers: list[nn.Module]) -> Iterator[None]:
    """Freeze every parameter outside ``layers`` while the block is active.

    The signals read only the layers' gradients. With the embeddings frozen, backward stops at
    the first layer's input: no gradient for the vocabulary-sized word embedding nor for the
    first layer's input projections. The layers' gradients are the same; a MiniLM state
    measurement on a CPU takes 6.5% less time (benchmarks/throughput.py).
    """
    inside = {id(p) for layer in layers for p in layer.parameters()}
    frozen = [p for p in model.parameters() if p.requires_grad and id(p) not in inside]
    for p in frozen:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in frozen:
            p.requires_grad_(True)


def _empty_stats(layer: nn.Module, seed: int) -> LayerStats:
    params = [p for p in layer.parameters() if p.requires_grad]
    return LayerStats(
        weights=linear_weights(layer),
        seed=seed,
        params=params,
        grad_mean=[torch.zeros_like(p, dtype=torch.float32) for p in params],
    )


def _fold_gradients(st: LayerStats, batch: Batch, total: int) -> None:
    """Add one micro-batch's gradients (after its backward pass) to the layer's statistics."""
    st.labels.append(batch.labels.cpu().numpy())
    squared = 0.0
    for p, g_mean in zip(st.params, st.grad_mean or [], strict=True):
        g = p.grad.detach().float() if p.grad is not None else torch.zeros_like(g_mean)
        squared += float((g * g).sum())
        g_mean.add_(g, alpha=len(batch) / total)
    st.fisher_sum += squared
    st.grad_norm_sum += math.sqrt(squared)
    st.micro_batches += 1
