"""Encoders: the network, its file and card, how it is found, its training and resume, and
the refining stage that starts from it. Tiny random (untrained) generators throughout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import napari_pulse
from conftest import drain
from napari_pulse import encoder, pipeline
from napari_pulse.bank import fingerprint
from napari_pulse.cli import main
from napari_pulse.events import Progress
from napari_pulse.generators import available
from napari_pulse.generators.tiny import TinyGenerator
from napari_pulse.job import State
from napari_pulse.options import Options
from napari_pulse.refine import RefineConfig, RefineSearch, RowAdam
from napari_pulse.search import SearchConfig
from napari_pulse.training.encoder import EncoderConfig, train_encoder

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_PULSE_CACHE", str(tmp_path / "cache"))
    encoder._LOADED.clear()
    return tmp_path / "cache"


@pytest.mark.parametrize(
    "low, latent", [((1, 8, 8), (4, 32)), ((3, 2, 2), (100,)), ((1, 16, 16), (10, 128))]
)
def test_the_encoder_puts_every_latent_vector_on_its_sphere(low, latent):
    enc = encoder.Encoder(low, latent)
    z = enc(torch.rand(5, *low))
    assert z.shape == (5, *latent)
    torch.testing.assert_close(z.norm(dim=-1), torch.full(z.shape[:-1], latent[-1] ** 0.5))


def _card(gen, factor=4) -> dict:
    return {
        "generator": gen.name,
        "generator_sha256": fingerprint(gen),
        "factor": factor,
        "degradation": "bicubic",
        "sigma": None,
    }


def test_a_file_keeps_the_network_and_its_card(tmp_path):
    gen = TinyGenerator()
    enc = encoder.Encoder((1, 8, 8), gen.latent_shape)
    path = encoder.save(tmp_path / "e.safetensors", enc, {**_card(gen), "note": "x"})
    again, card = encoder.load(path)
    assert card["note"] == "x" and card["version"] == encoder.VERSION
    x = torch.rand(3, 1, 8, 8)
    torch.testing.assert_close(again(x), enc.half().float()(x))  # stored in half precision
    with pytest.raises(ValueError, match="not a napari-pulse encoder"):
        encoder.read_card(_plain_safetensors(tmp_path))


def _plain_safetensors(tmp_path):
    from safetensors.torch import save_file

    save_file({"a": torch.zeros(1)}, str(tmp_path / "plain.safetensors"))
    return tmp_path / "plain.safetensors"


def test_only_an_encoder_made_for_these_weights_factor_and_operator_is_found(cache):
    gen = TinyGenerator()
    folder = cache / "encoders"
    folder.mkdir(parents=True)
    enc = encoder.Encoder((1, 8, 8), gen.latent_shape)
    assert encoder.find(gen, (1, 8, 8), 4, "bicubic") is None
    path = folder / encoder.file_name("tiny", 4, "bicubic")
    path.write_bytes(b"not an encoder")  # a damaged file is skipped
    assert encoder.find(gen, (1, 8, 8), 4, "bicubic") is None
    encoder.save(path, enc, {**_card(TinyGenerator(seed=1))})  # other weights
    assert encoder.find(gen, (1, 8, 8), 4, "bicubic") is None
    encoder.save(path, enc, _card(gen))
    found = encoder.find(gen, (1, 8, 8), 4, "bicubic")
    assert found is not None and found.path == path and found.rung == {}
    assert encoder.find(gen, (1, 4, 4), 4, "bicubic") is None  # another tile
    assert encoder.find(gen, (1, 8, 8), 4, "area") is None  # another operator


def test_encoder_files_are_not_listed_as_generators():
    assert not any(".encoder-" in info.name for info in available())


def _images(folder, n=3):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        a = np.kron(rng.random((8, 8)), np.ones((6, 6)))
        Image.fromarray(np.rint(a * 255).astype(np.uint8)).save(folder / f"f{i}.png")
    return folder


def test_training_writes_an_encoder_that_upscale_finds_and_a_stopped_run_resumes(tmp_path, cache):
    images = _images(tmp_path / "images")
    kw = dict(generator="tiny", factor=4, images=str(images), holdout=0.0, draw_steps=3)
    kw.update(real_steps=3, batch=4, checkpoint_every=2, width=8, hidden=32)
    whole = train_encoder(EncoderConfig(**kw, out=str(tmp_path / "whole.safetensors")))

    class Stop(Exception):
        pass

    def stop_at_5(event):
        if event.step == 5:
            raise Stop

    out = cache / "encoders" / encoder.file_name("tiny", 4, "bicubic")
    with pytest.raises(Stop):  # written to the cache directory: tiny has no file
        train_encoder(EncoderConfig(**kw), stop_at_5)
    assert not out.exists()
    phases: list[str] = []
    assert train_encoder(EncoderConfig(**kw), lambda e: phases.append(e.phase)) == out
    assert phases == ["real", "real"]  # resumed at step 4 (the last checkpoint)
    a, card = encoder.load(whole)
    b, _ = encoder.load(out)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        torch.testing.assert_close(x, y, msg=name)
    assert card["generator_sha256"] == fingerprint(TinyGenerator())
    assert card["training"]["data"]["images"]["files"] == 3
    # upscale finds it for tiny at x4 and starts every tile from it.
    events: list[Progress] = []
    img = np.random.default_rng(1).random((8, 8)).astype(np.float32)
    r = napari_pulse.upscale(img, generator="tiny", factor=4, steps=4, restarts=2,
                             progress=events.append)  # fmt: skip
    assert events[0].stage == "encoder" and "encoder" in r.params["tiles_at_eps_after"]
    assert r.params["encoder"] == out.name
    off = napari_pulse.upscale(img, generator="tiny", factor=4, steps=4, restarts=2,
                               config=SearchConfig(encoder=False))  # fmt: skip
    assert "encoder" not in off.params["tiles_at_eps_after"] and off.params["encoder"] is None


def test_the_train_encoder_command(tmp_path, cache, capsys):
    out = tmp_path / "mine.safetensors"
    argv = ["train-encoder", "--generator", "tiny", "--factor", "4", "--draw-steps", "2"]
    argv += ["--batch", "2", "--width", "8", "--hidden", "16", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    assert out.exists() and "wrote" in capsys.readouterr().out
    assert encoder.read_card(out)["training"]["settings"]["draw_steps"] == 2
    assert main([*argv[:-3], "--out", str(tmp_path / "x.pt")]) == 2
    assert ".safetensors" in capsys.readouterr().err


class _Oracle:
    """Starts at the latents and noise that made each target (perturbed for noise tiles)."""

    def __init__(self, z, noise):
        self.z, self.noise = z, noise

    def __call__(self, job, state, units, k):
        return self.z[units][:, None].expand(-1, k, *self.z.shape[1:]), [
            n[units][:, None].expand(-1, k, *n.shape[1:]) for n in self.noise
        ]


def _oracle_job(explained: int, missed: int, restarts: int):
    """One-tile planes of the tiny generator: ``explained`` drawn from latents ``z``, then
    ``missed`` of noise that no start near ``z`` explains; the latents, setup and job."""
    from napari_pulse.degrade import Degradation

    gen = TinyGenerator()
    rng = torch.Generator().manual_seed(0)
    z = gen.sample_latents(explained + missed, rng)
    with torch.no_grad():
        hr = (gen.synthesize(z) + 1) / 2
    low = Degradation("bicubic", 4)(hr)[:, 0]
    low[explained:] = torch.rand(missed, 8, 8, generator=rng)
    exact = SearchConfig(precision="float32")  # "explained": a fit to float32's precision
    options = Options(generator=gen, factor=4, steps=10, restarts=restarts, config=exact)
    setup = options.resolve(False)
    _, job = pipeline.prepare(low.numpy(), False, setup, live=True)
    return z, setup, job


def test_settled_tiles_leave_the_pool_at_once_and_the_rest_use_their_steps():
    z, setup, job = _oracle_job(3, 3, restarts=2)  # six one-tile planes
    cfg = replace_cfg(setup.cfg, batch_size=4)  # two tiles of two rows at a time
    stage = RefineSearch(cfg, RefineConfig(starts=2, steps=30, patience=3), _Oracle(z, []))
    events: list[Progress] = []
    state = drain(stage.run(job, State(passes=torch.zeros(6, dtype=torch.long))), events)
    assert state.cands.mse.shape == (6, 1)  # one sample: only the best start is handed on
    assert (state.cands.mse[:3, 0] < 1e-6).all() and (state.cands.mse[3:, 0] > 2e-3).all()
    passes = state.passes.tolist()
    assert all(p <= 2 * 4 for p in passes[:3])  # explained at once: a step or two, then out
    assert all(p == 2 * 31 for p in passes[3:])  # the others: every step and a last look
    assert state.at_eps["refine"] == 3
    assert len(events) < stage.plan(job)  # the pool was refilled: fewer passes than planned
    done = [e.done for e in events]
    assert done == sorted(done) and done[-1] <= stage.plan(job)


def replace_cfg(cfg, **kw):
    from dataclasses import replace

    return replace(cfg, **kw)


def test_row_adam_matches_torch_adam_for_rows_that_started_together():
    torch.manual_seed(0)
    p = torch.randn(3, 5)
    q = p.clone().requires_grad_()
    opt = torch.optim.Adam([q], lr=0.1)
    moments = [(torch.zeros_like(p), torch.zeros_like(p))]
    for t in range(1, 6):
        g = torch.sin(p * t)
        q.grad = torch.sin(q.detach() * t)
        opt.step()
        RowAdam().step([p], [g], moments, torch.full((3,), t), torch.full((3,), 0.1))
    torch.testing.assert_close(p, q.detach())


def test_encoder_starts_are_the_guess_its_one_vector_form_and_perturbations_near_it():
    from napari_pulse.starts import EncoderStarts

    gen = TinyGenerator()
    setup = Options(generator=gen, factor=4, restarts=6).resolve(rgb=False)
    low = np.random.default_rng(2).random((3, 8, 8)).astype(np.float32)
    _, job = pipeline.prepare(low, False, setup)
    torch.manual_seed(0)
    enc = encoder.Encoder((1, 8, 8), gen.latent_shape)
    starts = EncoderStarts(enc, spread=0.3)
    z, noise = starts(job, State(), torch.arange(3), 5)
    assert z.shape == (3, 5, *gen.latent_shape) and noise == []
    with torch.no_grad():
        torch.testing.assert_close(z[:, 0], enc(job.lr_tiles))  # the guess itself
    one = z[:, 1]
    torch.testing.assert_close(one, one[:, :1].expand_as(one))  # one vector for all layers
    unit = torch.nn.functional.normalize
    cos = (unit(z[:, 2:], dim=-1) * unit(one, dim=-1)[:, None]).sum(-1)
    assert (cos > 0.7 - 1e-4).all() and (cos < 1 - 1e-4).all()  # near it, none the same
    again, _ = EncoderStarts(enc, spread=0.3)(job, State(), torch.tensor([2, 0]), 5)
    torch.testing.assert_close(again, z[[2, 0]])  # any subset: the same starts


def test_an_encoder_for_a_bundled_generator_goes_to_the_cache_and_wins_over_the_bundled(cache):
    from napari_pulse.generators import load
    from napari_pulse.training.encoder import output_path

    out = output_path(EncoderConfig(generator="nuclei", factor=4))
    assert out == cache / "encoders" / "nuclei.encoder-x4-bicubic.safetensors"  # not the package
    places = encoder.candidates(load("nuclei"), 4, "bicubic")
    assert places[0] == out and places[-1].parent == encoder.BUNDLED_DIR


def test_the_retry_rung_follows_the_encoder_rung_and_can_be_switched_off(monkeypatch):
    gen = TinyGenerator()
    enc = encoder.Encoder((1, 8, 8), gen.latent_shape)
    found = encoder.Found(enc, None, {})
    monkeypatch.setattr(pipeline, "encoder_for", lambda setup, job: found)
    low = np.random.default_rng(3).random((8, 8)).astype(np.float32)
    for config, names in [
        (SearchConfig(), ["encoder", "retry", "search", "choose", "blend"]),
        (SearchConfig(retry_starts=0), ["encoder", "search", "choose", "blend"]),
    ]:
        setup = Options(generator=gen, factor=4, config=config).resolve(False)
        _, job = pipeline.prepare(low, False, setup)
        stages = pipeline.build(setup, job)
        assert [s.name for s in stages] == names
    retry = pipeline.build(Options(generator=gen, factor=4).resolve(False), job)[1]
    assert retry.rcfg.starts == 8 and retry.rcfg.steps == 120 and retry.starts.spread == 0.6


def test_the_retry_rung_refines_only_the_tiles_left_above_eps_from_other_starts():
    from napari_pulse.job import RETRY
    from napari_pulse.starts import EncoderStarts

    z, setup, job = _oracle_job(2, 2, restarts=8)  # two tiles the oracle's starts miss
    gen = job.render.g
    first = RefineSearch(setup.cfg, RefineConfig(starts=2, steps=5), _Oracle(z, []), "encoder")
    state = drain(first.run(job, State(passes=torch.zeros(4, dtype=torch.long))), [])
    before = state.passes.clone()
    enc = encoder.Encoder((1, 8, 8), gen.latent_shape)
    wide = EncoderStarts(enc, spread=0.6, stream=RETRY)
    retry = RefineSearch(setup.cfg, RefineConfig(starts=8, steps=6), wide, "retry")
    after = drain(retry.run(job, state), [])
    assert (after.passes[:2] == before[:2]).all()  # tiles at eps are left alone
    assert (after.passes[2:] == before[2:] + 8 * 7).all()  # 8 starts, 6 steps, a last look
    assert set(after.at_eps) == {"encoder", "retry"}
    assert (after.cands.mse[:, 0] <= state.cands.mse[:, 0]).all()  # never worse
    units = torch.arange(2)
    near, _ = EncoderStarts(enc, spread=0.6)(job, state, units, 8)
    other, _ = wide(job, state, units, 8)
    torch.testing.assert_close(other[:, :2], near[:, :2])  # the same guess, both forms
    assert not torch.allclose(other[:, 2:], near[:, 2:])  # perturbed from another stream


def test_the_encoder_rung_is_the_users_else_the_encoders_card_else_the_general_one(cache):
    gen = TinyGenerator()
    enc = encoder.Encoder((1, 8, 8), gen.latent_shape)
    folder = cache / "encoders"
    folder.mkdir(parents=True)
    path = folder / encoder.file_name("tiny", 4, "bicubic")
    # a measured budget in the card; keys it does not know and bad values are ignored
    own = {"steps": 500, "patience": 40, "speed": 3, "starts": 0}
    encoder.save(path, enc, {**_card(gen), "rung": own})
    found = encoder.find(gen, (1, 8, 8), 4, "bicubic")
    assert found.rung == {"steps": 500, "patience": 40}
    low = np.random.default_rng(3).random((8, 8)).astype(np.float32)

    def rungs(config, **options):
        setup = Options(generator=gen, factor=4, config=config, **options).resolve(False)
        _, job = pipeline.prepare(low, False, setup)
        stages = pipeline.build(setup, job)
        return [(s.rcfg.starts, s.rcfg.steps, s.rcfg.patience) for s in stages[:2]]

    # the card's steps and patience; the general starts; never more steps than `steps`
    assert rungs(SearchConfig()) == [(2, 500, 40), (8, 120, 40)]
    assert rungs(SearchConfig(), steps=300) == [(2, 300, 40), (8, 120, 40)]
    # what the user sets wins
    mine = SearchConfig(encoder_starts=3, encoder_steps=20, encoder_patience=5)
    assert rungs(mine) == [(3, 20, 5), (8, 120, 5)]
    r = napari_pulse.upscale(low, generator=gen, factor=4, steps=20, restarts=4)
    assert r.params["encoder"] == path.name
    ran = {k: r.params["search"][f"encoder_{k}"] for k in ("starts", "steps", "patience")}
    assert ran == {"starts": 2, "steps": 20, "patience": 40}  # what it ran with, recorded
    encoder.save(path, enc, _card(gen))  # a card without a budget: the general one
    encoder._LOADED.clear()
    assert rungs(SearchConfig()) == [(2, 60, 8), (8, 120, 8)]


def test_train_encoder_keeps_the_rung_budget_it_is_given_in_the_card(tmp_path, capsys):
    out = tmp_path / "e.safetensors"
    cfg = EncoderConfig(generator="tiny", factor=4, draw_steps=2, out=str(out), batch=4)
    train_encoder(cfg)
    assert "rung" not in encoder.read_card(out)
    again = EncoderConfig(**{**cfg.__dict__, "rung_steps": 800, "rung_patience": 100})
    train_encoder(again)  # the finished run is resumed: same weights, the budget recorded
    card = encoder.read_card(out)
    assert card["rung"] == {"steps": 800, "patience": 100}
    assert card["training"]["last_batch"]  # kept from the checkpoint
    base = ["train-encoder", "--generator", "tiny", "--factor", "4", "--out", str(out)]
    assert main([*base, "--rung-steps", "x"]) == 2
    assert main([*base, "--rung-steps", "0"]) == 2
    assert "--rung-steps must be at least 1" in capsys.readouterr().err


@pytest.mark.parametrize(
    "field, value",
    [
        ("retry_starts", -1),
        ("retry_steps", 0),
        ("retry_spread", 2.5),
        ("encoder_starts", 0),
        ("encoder_steps", 0),
        ("encoder_patience", -1),
        ("encoder_steps", 2.5),
    ],
)
def test_bad_retry_settings_are_refused(field, value):
    with pytest.raises(ValueError, match=f"config.{field}"):
        Options(generator=TinyGenerator(), factor=4, config=SearchConfig(**{field: value})).resolve(
            False
        )
