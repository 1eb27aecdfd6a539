"""The NAS loop without hand work (issue 25, item 6): arch_ids of any int-like type, define-by-run
suggestions (rfsweep.nas.suggest) with a fake trial and with optuna when installed, and (marked torch)
building what a NAS user holds: a Decimal arch_id of a space of stages, a JSONL line, a suggested
candidate, a head of K classes; torchvision model names in analyze."""

from __future__ import annotations

import io
import json
import random
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pyarrow.parquet as pq
import pytest

from rfsweep import api as sweep
from rfsweep.core.errors import RFSweepError
from rfsweep.nas import Candidate, suggest
from rfsweep.nas.export import export
from rfsweep.output.select import Selection, parse_ids
from rfsweep.space import build_space
from rfsweep.space.ids import as_arch_id

SPACE = {
    "input_size": 32,
    "in_channels": 3,
    "stem": [{"op": "conv", "kernel": 3, "stride": 2, "channels": 8, "act": "hardswish"}],
    "stages": [
        {"block": "mbconv", "depth": [1, 2], "kernel": [3, 5], "expand": [1, "3/2", 4], "channels": [8, 16],
         "stride": 1, "se": [False, True]},
        {"block": "basic", "depth": [1, 2], "kernel": 3, "dilation": [1, 2], "channels": 16, "stride": 2},
    ],
    "head": [{"op": "global_pool"}, {"op": "linear", "channels": 10, "act": "none"}],
}  # fmt: skip


class FakeTrial:
    """Optuna's define-by-run interface, answering at random (or from ``fixed``), recording each decision."""

    def __init__(self, seed: int, fixed: dict | None = None):
        self.rng, self.params, self.fixed = random.Random(seed), {}, fixed or {}

    def suggest_categorical(self, name, choices):
        assert name not in self.params, f"{name} asked twice"
        assert all(isinstance(c, (bool, int, float, str)) for c in choices), choices  # what optuna stores
        value = self.fixed.get(name, self.rng.choice(choices))
        self.params[name] = value
        return value


@pytest.fixture(scope="module")
def space():
    return build_space(json.loads(json.dumps(SPACE)))


@pytest.fixture(scope="module")
def rows(space):
    return sweep.search(space, columns="lists").set_index("arch_id", drop=False)


def test_arch_ids_of_any_int_like_type(space):
    big = Decimal(12345678901234567890123456)
    assert as_arch_id(big) == 12345678901234567890123456
    for value in (np.int64(7), Decimal(7), 7.0, Fraction(7), "7"):
        assert as_arch_id(value) == 7
        assert space.decode(value) == space.decode(7)
    assert parse_ids([Decimal(3), np.int32(4), 3]) == [3, 4]
    for bad in (Decimal("1.5"), 2.5, -1, True, "x", None):
        with pytest.raises(RFSweepError, match="field 'arch_id'"):
            as_arch_id(bad)
    assert Selection(ids=[Decimal(5)]).ids == [5]


def test_suggestions_are_the_rows_of_their_answers(space, rows):
    seen = {}
    for seed in range(150):
        trial = FakeTrial(seed)
        c = suggest(trial, space)
        assert isinstance(c, Candidate) and c.feasible
        assert c.arch_id == space.encode(c.choices)
        row = rows.loc[c.arch_id]
        for key in ("rf", "jump", "out_size", "params", "macs", "peak_act", "peak_act_bytes"):
            assert c.metrics[key] == row[key], key
        assert c.metrics["erf_sigma"] == pytest.approx(row["erf_sigma"], rel=1e-12)
        # the answers are the candidate: depth, channels and each block's kernel, dilation, expansion, SE
        p = space.stage_positions[0]
        blocks = space.positions[p][c.choices[p]].blocks
        assert trial.params["stage1.depth"] == len(blocks)
        assert trial.params["stage1.channels"] == blocks[-1].channels
        for b, block in enumerate(blocks):
            assert trial.params[f"stage1.{b}.kernel"] == block.kernel
            assert Fraction(str(trial.params[f"stage1.{b}.expand"])) == block.expand
            assert trial.params[f"stage1.{b}.se"] == block.se
        assert "stage1.1.kernel" not in trial.params or len(blocks) == 2  # never asked past the depth
        assert all(
            not k.endswith(".dilation") or trial.params.get(k.replace("dilation", "kernel"), 3) > 1
            for k in trial.params
        )  # fmt: skip  (stage2's one kernel, 3, is never asked)
        seen.setdefault(json.dumps(trial.params, sort_keys=True), c.arch_id)
    assert len(set(seen.values())) == len(seen) > 100  # distinct answers, distinct candidates


def test_every_candidate_can_be_suggested(space):
    """Answers enumerate the space: each configuration of each stage is reachable."""
    for p in space.stage_positions:
        name = space.position_names[p]
        for i, choice in enumerate(space.positions[p]):
            fixed = {f"{name}.depth": len(choice.blocks), f"{name}.channels": choice.channels}
            for b, block in enumerate(choice.blocks):
                fixed.update({f"{name}.{b}.kernel": block.kernel, f"{name}.{b}.dilation": block.dilation,
                              f"{name}.{b}.expand": float(block.expand), f"{name}.{b}.se": block.se})  # fmt: skip
            assert suggest(FakeTrial(0, fixed), space).choices[p] == i


def test_suggestions_outside_the_constraints_say_so(space, rows):
    budget = int(np.median(rows["macs"]))
    tight = build_space({**json.loads(json.dumps(SPACE)), "max_macs": budget})
    flags = set()
    for seed in range(40):
        c = suggest(FakeTrial(seed), tight)
        assert c.feasible == (rows.loc[c.arch_id, "macs"] <= budget)
        assert c.metrics["macs"] == rows.loc[c.arch_id, "macs"]
        flags.add(c.feasible)
    assert flags == {True, False}


def test_suggest_on_a_chain_of_one_depth_and_refusals():
    chain = build_space(dict(depth=3, kernels=[1, 3], strides=[1, 2], channels=[4, 8], input_size=16))
    c = suggest(FakeTrial(1), chain)
    want = sweep.search(chain, columns="compact").set_index("arch_id").loc[c.arch_id]
    assert (c.metrics["rf"], c.metrics["params"], c.metrics["peak_act"]) == (want.rf, want.params, want.peak_act)
    with pytest.raises(RFSweepError, match="field 'depth'"):
        suggest(FakeTrial(1), build_space(dict(depth="1-3", input_size=16)))
    with pytest.raises(RFSweepError, match="field 'trial'"):
        suggest(object(), chain)


def test_suggest_with_optuna_when_installed(space):
    optuna = pytest.importorskip("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda trial: suggest(trial, space).metrics["macs"], n_trials=10)
    assert len(study.trials) == 10


def test_suggest_imports_no_optuna():
    import subprocess
    import sys

    code = "import rfsweep.nas, sys; assert 'optuna' not in sys.modules and 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------ with torch


@pytest.fixture(scope="module")
def ofa_file(tmp_path_factory):
    """A few uniform samples of Once-for-All MobileNetV3 (decimal128 arch_ids) as a search output."""
    pytest.importorskip("torch")
    from rfsweep.space.stages import load

    path = str(tmp_path_factory.mktemp("ofa") / "ofa.parquet")
    sweep.search_to_parquet(path, build_space(load("ofa_mbv3")), columns="compact", sample=2, seed=5)
    return path


@pytest.mark.torch
def test_build_takes_decimal_ids_jsonl_lines_candidates_and_classes(ofa_file, space):
    torch = pytest.importorskip("torch")
    from rfsweep.torch import build

    df = pq.read_table(ofa_file).to_pandas()
    assert isinstance(df["arch_id"].iloc[0], Decimal)  # what pandas gives for the decimal128 ids
    row = df.iloc[0]
    model = build(row["arch_id"], space=ofa_file)
    assert sum(p.numel() for p in model.parameters()) == row["params"]
    assert sum(p.numel() for p in build(row, space=ofa_file).parameters()) == row["params"]
    # a JSONL line of the export, with its arch_id and metrics, builds the same model
    buf = io.StringIO()
    export(ofa_file, None, to="jsonl", stdout=buf, selection=Selection(ids=[row["arch_id"]]))
    line = json.loads(buf.getvalue())
    assert line["metrics"]["params"] == row["params"] and line["arch_id"] == int(row["arch_id"])
    assert sum(p.numel() for p in build(line, space=ofa_file).parameters()) == row["params"]
    with pytest.raises(RFSweepError, match=r"build\(line, space=FILE\)"):
        build(line)
    # K classes: the head's Linear(1280, 1000) becomes Linear(1280, K)
    model = build(row["arch_id"], space=ofa_file, num_classes=7)
    assert sum(p.numel() for p in model.parameters()) == row["params"] - 993 * 1281
    with torch.no_grad():
        assert model.eval()(torch.zeros(1, 3, 224, 224)).shape == (1, 7)
    # a suggested candidate
    c = suggest(FakeTrial(3), space)
    assert sum(p.numel() for p in build(c).parameters()) == c.metrics["params"]


@pytest.mark.torch
def test_analyze_takes_torchvision_names():
    torchvision = pytest.importorskip("torchvision")
    import rfsweep

    by_name = rfsweep.analyze("mobilenet_v2")
    by_module = rfsweep.analyze(torchvision.models.mobilenet_v2(weights=None))
    assert by_name[["name", "rf", "jump", "params"]].equals(by_module[["name", "rf", "jump", "params"]])
    spatial = by_name[by_name["jump"].map(lambda j: j[0] is not None)]
    assert spatial["rf"].iloc[-1] == (491, 491) and spatial["jump"].iloc[-1] == (32, 32)
    with pytest.raises(RFSweepError, match="nor a torchvision or timm model name"):
        rfsweep.analyze("no_such_model_anywhere")


@pytest.mark.torch
def test_analyze_takes_timm_names_when_installed():
    pytest.importorskip("timm")
    import rfsweep

    assert len(rfsweep.analyze("resnet18")) > 0  # a zoo name wins; a timm-only name:
    assert rfsweep.analyze("mobilenetv3_small_050")["params"].sum() > 0


@pytest.mark.torch
def test_guide_suggest_recipe_runs(monkeypatch, capsys):
    """docs/guide/nas.md's define-by-run recipe, with optuna itself when installed, else a stand-in study
    that drives the objective with FakeTrial (the recipe's own code either way)."""
    pytest.importorskip("torch")
    import sys
    import types

    import docs_pages

    if importlib_util_find("optuna") is None:
        stub = types.ModuleType("optuna")

        class TrialPruned(Exception):
            pass

        class Study:
            def __init__(self, sampler=None):
                self.best_value, self.best_params = None, {}

            def optimize(self, objective, n_trials):
                for seed in range(n_trials):
                    trial = FakeTrial(seed)
                    try:
                        value = objective(trial)
                    except TrialPruned:
                        continue
                    if self.best_value is None or value < self.best_value:
                        self.best_value, self.best_params = value, trial.params

        stub.TrialPruned, stub.create_study = TrialPruned, lambda sampler=None: Study(sampler)
        stub.samplers = types.SimpleNamespace(TPESampler=lambda seed=None: None)
        monkeypatch.setitem(sys.modules, "optuna", stub)
    exec(compile(docs_pages.recipe("suggest"), "nas.md:suggest", "exec"), {})
    out = capsys.readouterr().out
    assert out.strip() and "stage" in out


def importlib_util_find(name):
    import importlib.util

    return importlib.util.find_spec(name)
