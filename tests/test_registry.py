"""The registry: file paths of every format, clear errors, the Gaussian-fit cache, entry
points of other packages, bundled native files, and published checkpoints (served locally)."""

from __future__ import annotations

import sys
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch
from safetensors.torch import save_file

from napari_pulse import cli
from napari_pulse.generators import ModelCard, available, cache, load, published, registry
from napari_pulse.generators import stylegan2 as sg2
from napari_pulse.generators.dcgan import DCGAN64
from napari_pulse.generators.native import save_native
from napari_pulse.generators.rosinality import load_rosinality

pytestmark = pytest.mark.usefixtures("one_thread")

CONFIG = dict(resolution=16, channels=3, style_dim=8, n_mlp=2, widths={4: 8, 8: 8, 16: 4})


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_PULSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(registry, "_loaded", {})


def rosinality_file(path, seed=0):
    """A ``g_ema`` checkpoint: our StyleGAN2 uses rosinality's parameter names."""
    torch.manual_seed(seed)
    torch.save({"g_ema": sg2.StyleGAN2(sg2.StyleGAN2Config(**CONFIG)).state_dict()}, path)
    return path


def files_under(folder):
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_load_takes_paths_of_each_format(tmp_path):
    torch.manual_seed(0)
    net = sg2.StyleGAN2(sg2.StyleGAN2Config(**CONFIG)).eval()
    native = save_native(tmp_path / "n.safetensors", net, ModelCard("n"))
    ros = rosinality_file(tmp_path / "r.pt")
    dcgan = DCGAN64(ModelCard("d"), nz=8, ngf=2, channels=3).eval()
    tar = tmp_path / "weights.tar"
    torch.save({"netG_state_dict": dcgan.state_dict()}, tar)

    assert load(native).net.config == net.config
    assert load(str(ros)).resolution == (16, 16)
    g = load(tar)
    assert isinstance(g, DCGAN64) and g.latent_shape == (8,) and g is load(str(tar))
    z = torch.randn(2, 8)
    with torch.no_grad():
        assert torch.equal(g.synthesize(z), dcgan.synthesize(z))
    assert not any(p.requires_grad for p in g.parameters())


def test_unknown_or_broken_files_get_clear_errors(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="not a generator file napari-pulse reads.*safetensors"):
        load(tmp_path / "notes.txt")
    torch.save({"encoder": torch.ones(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="neither a rosinality.*encoder"):
        load(tmp_path / "other.pt")
    save_file({"x": torch.ones(1)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(ValueError, match="no napari-pulse model card"):
        load(tmp_path / "plain.safetensors")
    with pytest.raises(FileNotFoundError, match="not found"):
        load(str(tmp_path / "missing.pkl"))
    with pytest.raises(ValueError, match="Unknown generator 'nope'.*path to a file"):
        load("nope")


def test_gaussian_fit_is_computed_once_per_weights_file(tmp_path, monkeypatch):
    calls = []
    real_fit = sg2.gaussian_fit

    def counting_fit(net, **kwargs):
        calls.append(kwargs)
        return real_fit(net, n=4000, batch=1000)  # fewer samples: this test checks caching

    monkeypatch.setattr(sg2, "gaussian_fit", counting_fit)
    path = rosinality_file(tmp_path / "r.pt")
    first = load_rosinality(path)
    second = load_rosinality(path)
    assert len(calls) == 1 and calls[0] == {"n": cache.FIT_SAMPLES, "batch": cache.FIT_BATCH}
    assert torch.equal(first.gauss_mean, second.gauss_mean)
    assert files_under(tmp_path / "cache") == [cache.gaussian_path(cache.file_sha256(path))]
    rosinality_file(path, seed=1)  # other weights, same name: a new fit
    load_rosinality(path)
    assert len(calls) == 2 and len(files_under(tmp_path / "cache")) == 2


def test_cache_dir_defaults_to_the_user_cache(monkeypatch):
    monkeypatch.delenv("NAPARI_PULSE_CACHE")
    assert cache.cache_dir().name == "napari-pulse"


def test_third_party_generator_from_an_entry_point(third_party_generator, capsys):
    third_party_generator(
        "pulse-thirdparty-demo", "pulse_thirdparty_demo", "thirdparty-demo", "resolution=16, "
    )
    infos = {i.name: i for i in available()}
    assert "thirdparty-demo" in infos and "pulse_thirdparty_demo" not in sys.modules
    assert infos["thirdparty-demo"].ok and infos["thirdparty-demo"].source == (
        "pulse-thirdparty-demo"
    )
    assert cli.main(["generators"]) == 0
    lines = capsys.readouterr().out.splitlines()
    line = next(ln for ln in lines if ln.split()[0] == "thirdparty-demo")
    assert "pulse-thirdparty-demo" in line and line.endswith("[ok]")
    g = load("thirdparty-demo")
    assert g.name == "thirdparty-demo" and g.resolution == (16, 16)


def test_bundled_native_files_are_listed_from_their_cards(tmp_path, monkeypatch):
    torch.manual_seed(0)
    net = sg2.StyleGAN2(sg2.StyleGAN2Config(**CONFIG))
    card = ModelCard("cells64", domain="cells", description="test cells")
    gaussian = (torch.zeros(8), torch.ones(8))
    save_native(tmp_path / "bundled" / "cells.safetensors", net, card, gaussian)
    monkeypatch.setattr(registry, "BUNDLED_DIR", tmp_path / "bundled")

    def boom(path):
        raise AssertionError("listing must not load weights")

    with monkeypatch.context() as m:
        m.setattr(registry, "load_file", boom)
        info = {i.name: i for i in available()}["cells64"]
    assert info.ok and info.summary == "test cells" and info.source == "bundled"
    assert load("cells64").card.domain == "cells"


def test_grayscale_default_is_the_bundled_nuclei_generator_when_it_ships(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "BUNDLED_DIR", tmp_path / "bundled")
    assert registry.default_for(1) == registry.default_for(3) == "faces-dcgan64"
    net = sg2.StyleGAN2(sg2.StyleGAN2Config(**CONFIG))
    gaussian = (torch.zeros(8), torch.ones(8))
    save_native(tmp_path / "bundled" / "n.safetensors", net, ModelCard("nuclei"), gaussian)
    assert registry.default_for(1) == "nuclei" and registry.default_for(3) == "faces-dcgan64"


# --- published checkpoints, served from 127.0.0.1 -----------------------------------


@pytest.fixture
def server(tmp_path, monkeypatch):
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}", httpd
    httpd.shutdown()
    httpd.server_close()


def test_fetch_with_the_right_hash_downloads_once_and_loads(tmp_path, server):
    root, url, httpd = server
    sha = cache.file_sha256(rosinality_file(root / "g.pt"))
    path = published.fetch(f"{url}/g.pt", sha, progress=False)
    assert path.parent == tmp_path / "cache" / "checkpoints" and cache.file_sha256(path) == sha
    assert load(path).resolution == (16, 16)
    httpd.shutdown()  # the cached copy is used: no second download
    assert published.fetch(f"{url}/g.pt", sha, progress=False) == path


def test_fetch_with_a_wrong_hash_is_refused_and_keeps_nothing(tmp_path, server):
    root, url, _ = server
    rosinality_file(root / "g.pt")
    with pytest.raises(ValueError, match="sha256 does not match.*nothing was kept"):
        published.fetch(f"{url}/g.pt", "0" * 64, progress=False)
    assert files_under(tmp_path / "cache") == []


def test_a_published_entry_is_listed_and_loads_with_its_card(tmp_path, server, monkeypatch):
    root, url, _ = server
    sha = cache.file_sha256(rosinality_file(root / "g.pt"))
    entry = published.PublishedCheckpoint(
        "demo-published", f"{url}/g.pt", sha, "rosinality", "demo", {"domain": "demo"}
    )
    monkeypatch.setitem(published.PUBLISHED, entry.name, entry)
    info = {i.name: i for i in available()}["demo-published"]
    assert info.source == "published" and info.ok
    assert files_under(tmp_path / "cache") == []  # listing downloads nothing
    g = load("demo-published")
    assert g.card.name == "demo-published" and g.card.domain == "demo"
