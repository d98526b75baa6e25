"""The one optimiser loop: best-so-far per unit, units of several rows, settling rules."""

from __future__ import annotations

import torch

from conftest import drain
from napari_pulse.optim import Below, Patience, Settle, optimise


def _problem(start: list[float], aim: float = 1.0, judge: float | None = None):
    """Rows ``x`` pulled toward ``aim`` by the loss; each row's MSE is its squared distance
    to ``judge`` (``aim`` when None)."""
    x = torch.tensor(start).requires_grad_()
    judge = aim if judge is None else judge

    def objective():
        return (x - aim).pow(2), (x - judge).detach().pow(2), x.detach()[:, None]

    return x, objective


def test_returns_each_rows_best_state_not_the_last():
    # The loss pulls every row to 1, but a row is judged by its distance to 0.5: each row's
    # best is where it passed closest to 0.5, not where it ended.
    x, objective = _problem([0.0, -2.0], aim=1.0, judge=0.5)
    images = torch.zeros((2, 1))
    ticks: list = []
    best = drain(
        optimise([x], objective, 120, lambda s: 0.05, lambda: None, [x], images=images), ticks
    )
    assert len(ticks) == 120 and [t.steps for t in ticks] == list(range(1, 121))
    assert abs(float(x[0]) - 1) < 0.1 and abs(float(x[1]) - 1) < 0.1  # where they ended
    assert float(best.mse.max()) < 0.03**2  # both passed near 0.5 on the way
    assert torch.allclose(best.values[0], torch.tensor([0.5, 0.5]), atol=0.03)
    torch.testing.assert_close(best.images[:, 0], best.values[0])  # images of the best rows
    assert ticks[-1].worst == float(best.mse.max())


def test_a_unit_of_several_rows_keeps_its_rows_together():
    # One unit of two rows, judged by their mean: its best state is one step, both rows.
    x = torch.tensor([0.0, 2.0]).requires_grad_()

    def objective():
        mse = ((x - 1).pow(2).mean() + 0 * x.sum()).detach()[None]
        return (x - torch.tensor([1.0, 5.0])).pow(2), mse, x.detach()

    best = drain(optimise([x], objective, 40, lambda s: 0.1, lambda: None, [x], rows=2))
    assert best.mse.shape == (1,)
    b = best.values[0]
    assert float(((b - 1) ** 2).mean()) == float(best.mse[0])  # the same step for both rows


def test_patience_stops_once_every_group_is_settled():
    x, objective = _problem([0.2, 0.4, 0.1, 0.3])
    settle = Patience(units=4, group=2, eps=1e-2, patience=5, enabled=True)
    ticks: list = []
    drain(optimise([x], objective, 500, lambda s: 0.05, lambda: None, [x], settle=settle), ticks)
    assert len(ticks) < 100  # at eps early: it stopped long before 500 steps
    assert ticks[-1].worst <= 1e-2
    off = Patience(units=4, group=2, eps=1e-2, patience=5, enabled=False)
    x, objective = _problem([0.2, 0.4, 0.1, 0.3])
    ticks = list(optimise([x], objective, 120, lambda s: 0.05, lambda: None, [x], settle=off))
    assert len(ticks) == 120


def test_below_holds_settled_units_at_their_best_and_stops_when_all_are():
    x, objective = _problem([0.9, -3.0])
    ticks: list = []
    settle = Below(level=0.05)
    loop = optimise([x], objective, 300, lambda s: 0.05, lambda: None, [x], settle=settle)
    best = drain(loop, ticks)
    assert float(best.mse[0]) <= 0.05 and float(best.mse[1]) <= 0.05
    assert len(ticks) < 300
    # The first row settled at once and was held where it was (it would have moved on).
    assert abs(float(best.values[0][0]) - float(x[0])) < 1e-6 and float((x[0] - 1) ** 2) > 1e-3


def test_the_plain_rule_never_stops_and_the_schedule_is_used():
    x, objective = _problem([0.0])
    rates: list[float] = []

    def lr(step: int) -> float:
        rates.append(step)
        return 0.0  # no movement at all

    best = drain(optimise([x], objective, 7, lr, lambda: None, [x], settle=Settle()))
    assert float(x[0]) == 0.0 and float(best.values[0][0]) == 0.0
    assert rates == [0, 0, 1, 2, 3, 4, 5, 6]  # the optimiser's first rate, then every step's
