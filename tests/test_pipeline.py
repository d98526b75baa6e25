"""The pipeline: which stages each choice of options builds, and the runner's one ledger."""

from __future__ import annotations

import math
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

import napari_pulse
from conftest import drain
from napari_pulse import pipeline
from napari_pulse.bank import BuildBank
from napari_pulse.events import Progress
from napari_pulse.guide import FitGuide
from napari_pulse.intermediate import FeatureSearch
from napari_pulse.options import Options, merged
from napari_pulse.search import LatentSearch, SearchConfig
from napari_pulse.starts import BlindStarts, GuidedStarts, NearestStarts


def _stages(**kw):
    setup = Options(generator="tiny", **kw).resolve(rgb=False)
    _, job = pipeline.prepare(np.zeros((8, 8), np.float32), False, setup)
    return pipeline.build(setup, job)


def _names(stages) -> list[str]:
    return [s.name for s in stages]


def _starts(stages) -> dict[str, type]:
    return {s.name: type(s.starts) for s in stages if isinstance(s, LatentSearch)}


def test_the_default_pipeline_searches_blind_chooses_and_blends():
    stages = _stages()
    assert _names(stages) == ["search", "choose", "blend"]
    assert _starts(stages) == {"search": BlindStarts}


@pytest.mark.parametrize(
    "config, names, starts",
    [
        (SearchConfig(bank=300), ["bank", "search"], {"search": NearestStarts}),
        (
            SearchConfig(bank=300, guide=True),
            ["bank", "guide", "search"],
            {"search": GuidedStarts},
        ),
        (
            SearchConfig(bank=300, quick=True),
            ["bank", "quick", "search"],
            {"quick": NearestStarts, "search": BlindStarts},
        ),
        (
            SearchConfig(bank=300, quick=True, guide=True),
            ["bank", "guide", "quick", "search"],
            {"quick": NearestStarts, "search": GuidedStarts},
        ),
    ],
)
def test_start_strategies_are_chosen_where_the_pipeline_is_built(config, names, starts):
    stages = _stages(config=config)
    assert _names(stages) == [*names, "choose", "blend"]
    assert _starts(stages) == starts
    bank = stages[0]
    assert isinstance(bank, BuildBank) and bank.size == 300
    guides = [s for s in stages if isinstance(s, FitGuide)]
    assert all(g.bank_stage is bank for g in guides)


def test_the_bank_of_guided_starts_is_drawn_with_one_seed_for_every_seed():
    nearest = _stages(config=SearchConfig(bank=300), seed=7)[0]
    guided = _stages(config=SearchConfig(bank=300, guide=True), seed=7)[0]
    assert (nearest.seed, guided.seed) == (7, 0)
    # The bank supplies every start it is asked for.
    assert _stages(config=SearchConfig(bank=4), restarts=16)[0].size == 16


def test_intermediate_mode_adds_the_feature_search_after_the_samples_are_chosen():
    stages = _stages(mode="intermediate")
    assert _names(stages) == ["search", "choose", "features", "blend"]
    assert isinstance(stages[2], FeatureSearch) and stages[2].layers == (1, 2)


class _Steps:
    """A toy stage: plans ``plan`` steps, runs ``run`` of them, counts its runs in the state."""

    def __init__(self, name: str, plan: int, run: int) -> None:
        self.name, self._plan, self._run = name, plan, run

    def plan(self, job) -> int:
        return self._plan

    def run(self, job, state):
        for i in range(self._run):
            yield Progress(self.name, i + 1, self._plan, 1, 1, 0.0)
        return replace(state, at_eps={**state.at_eps, self.name: self._run})


def test_the_runner_sums_the_plans_and_moves_one_ledger_from_stage_to_stage():
    stages = [_Steps("a", 3, 3), _Steps("b", 5, 2), _Steps("c", 0, 0), _Steps("d", 4, 4)]
    events: list[Progress] = []
    job = SimpleNamespace(n_units=2)  # the toy stages read nothing else of it
    state = drain(pipeline.run(job, stages, preview=lambda: "image"), events)
    assert [(e.stage, e.done) for e in events] == [
        ("a", 1), ("a", 2), ("a", 3),
        ("b", 4), ("b", 5),  # b stopped early: the rest of its share is skipped
        ("d", 9), ("d", 10), ("d", 11), ("d", 12),
    ]  # fmt: skip
    assert {e.total for e in events} == {12}
    assert all(e.preview() == "image" for e in events)
    assert state.at_eps == {"a": 3, "b": 2, "c": 0, "d": 4}


def test_events_of_an_upscale_are_monotone_and_planned_again_only_as_a_stage_starts():
    img = np.random.default_rng(0).random((12, 12)).astype(np.float32)
    for config in (None, SearchConfig(bank=256, quick=True)):
        events: list[Progress] = []
        napari_pulse.upscale(
            img, generator="tiny", factor=4, steps=6, restarts=4, samples=2,
            config=config, progress=events.append,
        )  # fmt: skip
        done = [e.done for e in events]
        assert done == sorted(done) and all(e.done <= e.total for e in events)
        assert events[-1].done == events[-1].total  # the bar ends full
        changed = [i for i in range(1, len(events)) if events[i].total != events[i - 1].total]
        assert all(events[i].stage != events[i - 1].stage for i in changed)
        assert all(e.preview is not None for e in events)
        assert events[0].best_mse == math.inf


def test_a_search_after_another_counts_only_the_tiles_left_above_eps():
    img = np.random.default_rng(0).random((40, 40)).astype(np.float32)
    kw = dict(generator="tiny", factor=4, steps=6, restarts=8, eps=0.03)  # 11 of 49 at eps
    events: list[Progress] = []
    result = napari_pulse.upscale(
        img, config=SearchConfig(bank=256, quick=True), progress=events.append, **kw
    )
    n_tiles = result.lr_psnr_tiles.size
    above = n_tiles - result.params["quick_wave_tiles_at_eps"]
    assert 0 < above < n_tiles
    first = events[0].total  # before any search: the search after the quick wave counts none
    search = [e for e in events if e.stage == "search"]
    cfg = merged(None, {**kw, "config": SearchConfig(bank=256, quick=True)}).resolve(False).cfg
    assert search[0].total - first == cfg.planned_steps(above) < cfg.planned_steps(n_tiles)
