"""Define-by-run search over a space's choices: :func:`suggest` asks an Optuna-style trial for each choice.

Optuna (and any sampler with the same interface) builds the search space as the objective runs: each
``trial.suggest_categorical(name, choices)`` call names one decision. For a space of stages the decisions
are the ones a NAS user thinks in: per stage its depth and output channels, per block its kernel,
dilation, expansion and squeeze-and-excitation (only those with more than one option, each asked only
when it can matter: a block past the stage's depth is never asked about; a dilation only for kernels
above 1). For a chain space of one depth, one decision a position names the layer (``conv3x3/s2/c32``).
The answers name exactly one candidate; its row (the kernels' own numbers, as a search writes them) comes
back with it. optuna itself is never imported here: any object with ``suggest_categorical`` works.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from rfsweep.core.errors import field_error
from rfsweep.engine.objectives import survivor_columns
from rfsweep.engine.run import evaluate
from rfsweep.space import Space, build_space

_CACHE: dict[str, Space] = {}


@dataclass
class Candidate:
    """One candidate chosen by a trial: its ``arch_id``, choice index per position, the space, the row's
    metrics (rf, jump, eff_padding, center, out_size, params, macs, erf_sigma, peak_act, peak_act_bytes, and
    per detector level its tap's) and whether it meets the space's constraints (``feasible``: its rf window,
    budgets, jumps; the metrics are given either way). ``rfsweep.torch.build(candidate)`` builds it."""

    arch_id: int
    choices: list[int]
    space: Space = field(repr=False)
    metrics: dict[str, float]
    feasible: bool

    def network_spec(self) -> dict:
        """The candidate's network spec (what ``rfsweep analyze`` reads)."""
        return self.space.network_spec(self.choices, name=str(self.arch_id))


def suggest(trial: Any, space: Any) -> Candidate:
    """Ask ``trial`` (an ``optuna.Trial`` or anything with ``suggest_categorical(name, choices)``) for one
    candidate of ``space`` and return it with its metrics.

    Parameters
    ----------
    trial
        The trial: each decision is one ``suggest_categorical`` call, named ``<stage>.depth``,
        ``<stage>.channels``, ``<stage>.<block>.kernel`` / ``.dilation`` / ``.expand`` / ``.se`` for a space of
        stages, ``l<position>`` for a chain.
    space : Space, str or dict
        A space of stages or a chain space of one depth: a :class:`rfsweep.space.Space` (build it once and
        pass it to every trial), a shipped space's name (``"ofa_mbv3"``) or a TOML path (built once and
        kept), or settings.

    Returns
    -------
    Candidate
        ``arch_id``, ``choices``, ``metrics`` (the search row's numbers) and ``feasible``.

    Examples
    --------
    >>> import optuna, rfsweep.nas, rfsweep.torch  # doctest: +SKIP
    >>> space = rfsweep.space.build_space(rfsweep.space.stages.load("ofa_mbv3"))  # doctest: +SKIP
    >>> def objective(trial):  # doctest: +SKIP
    ...     c = rfsweep.nas.suggest(trial, space)
    ...     if not c.feasible or c.metrics["macs"] > 300e6:
    ...         raise optuna.TrialPruned()
    ...     model = rfsweep.torch.build(c)
    ...     return train_and_score(model)
    """
    sp = _space(space)
    if not hasattr(trial, "suggest_categorical"):
        raise field_error("trial", type(trial).__name__, "needs a suggest_categorical(name, choices) method")
    if sp.has_blocks:
        idx = [_suggest_stage(trial, sp, p) for p in range(sp.depth_max)]
    else:
        if sp.depth_min != sp.depth_max:
            raise field_error("depth", f"{sp.depth_min}-{sp.depth_max}", "suggest takes a chain space of one depth")
        idx = [_suggest_layer(trial, sp, p) for p in range(sp.depth_max)]
    return _candidate(sp, idx)


def _space(space: Any) -> Space:
    if isinstance(space, Space):
        return space
    if isinstance(space, str):
        if space not in _CACHE:
            from rfsweep.space.stages import load

            _CACHE[space] = build_space(load(space), for_search=False)
        return _CACHE[space]
    if isinstance(space, dict):
        return build_space(dict(space), for_search=False)
    raise field_error("space", type(space).__name__, "must be a Space, a shipped space's name, a TOML path or settings")


def _value(x: Any) -> Any:
    """A categorical choice as Optuna stores them (bool, int, float, str): an expansion as a float when
    exact, else its fraction as text."""
    if isinstance(x, Fraction):
        return int(x) if x.denominator == 1 else float(x) if Fraction(float(x)) == x else str(x)
    return x


def _ask(trial: Any, name: str, options: list) -> Any:
    """One decision: asked only when there is a choice; returns the option (not its stored form)."""
    if len(options) == 1:
        return options[0]
    shown = [_value(o) for o in options]
    answer = trial.suggest_categorical(name, shown)
    if answer not in shown:
        raise field_error(name, answer, f"is not one of the choices {shown}")
    return options[shown.index(answer)]


def _block_key(block) -> tuple:
    return (block.kernel, block.dilation, block.expand, block.se)


def _stage_index(space: Space, p: int) -> dict:
    """{(channels, block keys): choice index} of a position, built once per space."""
    cache = space.__dict__.setdefault("_suggest_index", {})
    if p not in cache:
        cache[p] = {(c.channels, tuple(_block_key(b) for b in c.blocks)): i for i, c in enumerate(space.positions[p])}
    return cache[p]


def _suggest_stage(trial: Any, space: Space, p: int) -> int:
    options = space.positions[p]
    if len(options) == 1:
        return 0
    name = space.position_names[p]
    depth = _ask(trial, f"{name}.depth", sorted({len(c.blocks) for c in options}))
    channels = _ask(trial, f"{name}.channels", sorted({c.channels for c in options if len(c.blocks) == depth}))
    keys = sorted({_block_key(b) for c in options for b in c.blocks}, key=lambda k: (k[0], k[1], k[2], k[3]))
    chosen = []
    for b in range(depth):
        k = _ask(trial, f"{name}.{b}.kernel", sorted({key[0] for key in keys}))
        d = _ask(trial, f"{name}.{b}.dilation", sorted({key[1] for key in keys if key[0] == k}))
        e = _ask(trial, f"{name}.{b}.expand", sorted({key[2] for key in keys if key[:2] == (k, d)}))
        se = _ask(trial, f"{name}.{b}.se", sorted({key[3] for key in keys if key[:3] == (k, d, e)}))
        chosen.append((k, d, e, se))
    at = _stage_index(space, p).get((channels, tuple(chosen)))
    if at is None:  # not a configuration of the stage (cannot happen for stages rfsweep builds)
        raise field_error(f"{name}", chosen, "is not a configuration of this stage")
    return at


def _label(choice) -> str:
    if choice.op == "conv":
        ch = {-2: "width", -1: "in"}.get(choice.channels, choice.channels)
        dil = f"/d{choice.dilation}" if choice.dilation > 1 else ""
        return f"conv{choice.kernel}x{choice.kernel}/s{choice.stride}{dil}/c{ch}"
    return f"{choice.op}{choice.kernel}x{choice.kernel}/s{choice.stride}"


def _suggest_layer(trial: Any, space: Space, p: int) -> int:
    options = space.positions[p]
    labels = [_label(c) for c in options]
    return labels.index(_ask(trial, f"l{p}", labels))


def _open(space: Space) -> Space:
    """The space without its constraints: every candidate's row."""
    cached = space.__dict__.get("_suggest_open")
    if cached is None:
        cached = dataclasses.replace(
            space, rf_min=1, rf_max=None, target_rf=None, max_params=None, max_macs=None, max_peak_act=None,
            jumps=(), levels=(), no_unproductive=False, min_convs=0, min_out_size=1,
        )  # fmt: skip
        space.__dict__["_suggest_open"] = cached
    return cached


def _candidate(space: Space, idx: list[int]) -> Candidate:
    choice = np.array([idx], np.int64)
    batch, mask = evaluate(space, choice)
    feasible = bool(mask.all())
    if not feasible:
        batch, mask = evaluate(_open(space), choice)
        if not mask.all():  # a map below one unit: no row at all
            raise field_error("candidate", idx, "does not fit the input (a feature map below one unit)")
    cols = survivor_columns(batch.out, space)
    metrics = {k: v[0].item() for k, v in cols.items() if k != "arch_id"}
    return Candidate(space.encode(idx), list(idx), space, metrics, feasible)


__all__ = ["Candidate", "suggest"]
