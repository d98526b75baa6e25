"""The "Upscale (PULSE)" dock widget: choices in, one ``iter_upscale`` on a worker, layers out."""

from __future__ import annotations

import os
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FloatSpinBox,
    Label,
    PushButton,
    SpinBox,
)
from napari.layers import Image, Shapes
from napari.utils.notifications import show_error, show_info, show_warning

from .. import guide
from ..api import iter_upscale
from ..batch.cluster import SCHEDULER_ENV
from ..degrade import DEGRADATIONS, MAX_SIGMA_PER_FACTOR
from ..generators import available, default_for, load
from ..generators.registry import GeneratorInfo
from ..intermediate import MODES, IntermediateConfig
from ..layout import has_single_channel
from ..options import Options, present_devices, starts_config
from ..search import SearchConfig
from .layers import preview_layer, result_layers
from .runner import UpscaleJob

if TYPE_CHECKING:
    import napari

FROM_FILE = "from file..."
GENERATOR_FILES = "*.safetensors *.pt *.pth *.pkl *.tar"

#: Quality presets: (optimiser steps, random starts per tile). "best" is the API default.
PRESETS: dict[str, tuple[int, int]] = {
    "fast": (150, 16),
    "balanced": (300, 48),
    "best": (SearchConfig.steps, SearchConfig.restarts),
}
WHOLE, VIEW, RECTANGLE = "whole image", "field of view", "rectangle in "
NOT_EXPLAINED = (
    "The search did not reach eps (low-res PSNR {psnr:.1f} dB): this generator cannot "
    "explain this image. Treat the result's details with suspicion; try another generator, "
    "another degradation, or more steps."
)


def devices() -> list[str]:
    """``auto`` plus the torch devices present on this machine."""
    return ["auto", *present_devices()]


class UpscaleWidget(Container):
    """Upscale an image layer with a PULSE latent search in a pretrained generator."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.job: UpscaleJob | None = None
        self._preview: Image | None = None  # the live-preview layer of the running job
        self._generators = {info.name: info for info in available()}
        #: (label, value) pairs; a callable source, so that napari's reset_choices() keeps
        #: generators added from files.
        self._gen_choices: list[tuple[str, str]] = [
            (name if info.ok else f"{name} (unavailable)", name)
            for name, info in self._generators.items()
        ] + [(FROM_FILE, FROM_FILE)]
        self._gen_current: str | None = None

        self._make_choices()
        self._make_strategies()
        self.device = ComboBox(label="device", choices=devices())
        self.region = ComboBox(label="region", choices=self._regions)
        self.all_planes = CheckBox(text="all planes (nD layers)", value=False)
        self.run_button = PushButton(text="Upscale")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.status = Label(label="", value="")
        for label in (self.generator_info, self.status):
            label.native.setWordWrap(True)
        self.extend(
            [
                self.image,
                self.generator,
                self.generator_info,
                self.factor,
                self.degradation,
                self.sigma,
                self.quality,
                self.mode,
                self.advanced,
                self.steps,
                self.restarts,
                self.samples,
                self.eps,
                self.seed,
                self.radius,
                self.realism,
                self.bank,
                self.quick,
                self.guided,
                self.device,
                self.region,
                self.all_planes,
                self.run_button,
                self.cancel_button,
                self.status,
            ]
        )

        self.generator.changed.connect(self._on_generator)
        self.degradation.changed.connect(lambda v: setattr(self.sigma, "visible", v == "psf"))
        self.quality.changed.connect(self._on_quality)
        self.advanced.changed.connect(self._on_advanced)
        self.mode.changed.connect(lambda _v: self._on_advanced(self.advanced.value))
        self.run_button.changed.connect(lambda: self.start())
        self.cancel_button.changed.connect(lambda: self.cancel())
        events = self.viewer.layers.events
        for name in ("inserted", "removed", "moved", "reordered"):
            emitter = getattr(events, name, None)
            if emitter is not None:
                emitter.connect(self._on_layers)
        # Until the user picks a generator, it follows the image: the default for its
        # channels (nuclei for grayscale when it ships, faces for RGB).
        self._follow_image = True
        self._choosing = False
        first_ok = next((n for n, i in self._generators.items() if i.ok), None)
        if first_ok is not None:
            self._set_generator(first_ok)
        self._choosing = True
        self._on_generator(self.generator.value)
        self._choosing = False
        self.image.changed.connect(self._default_generator)
        self._on_layers()
        self._default_generator()

    def _make_choices(self) -> None:
        """The image, generator, factor, degradation and budget choices."""
        self.image = ComboBox(label="image", choices=self._image_layers, nullable=True)
        self.generator = ComboBox(label="generator", choices=lambda _w: self._gen_choices)
        self.generator_info = Label(label="")
        self._factors: list[int] = []
        # Callables, not lists: napari calls reset_choices() on dock widgets as layers
        # change, which would put a static list back to its initial value.
        self.factor = ComboBox(label="factor", choices=lambda _w: self._factors)
        self.degradation = ComboBox(label="degradation", choices=list(DEGRADATIONS))
        self.sigma = FloatSpinBox(
            label="PSF sigma", value=1.0, min=0.1, max=50.0, step=0.1, visible=False
        )
        self.factor.changed.connect(self._bound_sigma)
        self.quality = ComboBox(label="quality", choices=list(PRESETS), value="balanced")
        self.advanced = CheckBox(text="advanced settings", value=False)
        steps, restarts = PRESETS["balanced"]
        self.steps = SpinBox(label="steps", value=steps, min=1, max=100_000, visible=False)
        self.restarts = SpinBox(label="restarts", value=restarts, min=1, max=10_000, visible=False)
        self.samples = SpinBox(label="samples", value=1, min=1, max=64, visible=False)
        self.eps = FloatSpinBox(
            label="eps (low-res MSE)", value=2e-3, min=1e-6, max=1.0, step=1e-4, visible=False
        )
        self.seed = SpinBox(label="seed", value=0, min=0, max=2**31 - 1, visible=False)

    def _make_strategies(self) -> None:
        """The search mode and the advanced strategy choices (feature radius, realism, the
        warm-start bank, the quick wave, guided starts)."""
        self.mode = ComboBox(label="search", choices=list(MODES), value="latent")
        self.mode.tooltip = (
            "latent: the generator's latent only (PULSE). intermediate: then its feature maps, "
            "inside a ball, for images the latent alone cannot reach"
        )
        self.radius = FloatSpinBox(
            label="feature radius",
            value=IntermediateConfig.radius,
            min=0.01,
            max=5.0,
            step=0.05,
            visible=False,
        )
        self.realism = FloatSpinBox(
            label="realism", value=0.0, min=0.0, max=1000.0, step=0.1, visible=False
        )
        self.bank = SpinBox(
            label="warm-start bank", value=0, min=0, max=65536, step=1024, visible=False
        )
        self.bank.tooltip = (
            "0: random starts. N: each tile starts from its nearest of N draws of the "
            "generator, rendered once (the first run takes longer) and cached; also tells "
            "you when the image looks unlike anything the generator draws"
        )
        self.quick = CheckBox(text="quick first wave", value=False, visible=False)
        self.quick.tooltip = (
            "each tile first tries its nearest bank draws on a small budget; only tiles "
            f"left above eps get the full search (a bank of {guide.QUICK_BANK} when the bank is 0)"
        )
        self.guided = CheckBox(text="guided starts", value=False, visible=False)
        self.guided.tooltip = (
            "a small network, fitted once on the bank, guesses each tile's latent; the "
            "starts spread from that guess to random ones. Finds fits that random starts "
            f"miss (a bank of {guide.RECOMMENDED_BANK} when the bank is 0; the first run "
            "takes longer)"
        )

    # -- choices kept in sync -------------------------------------------------------------

    def _image_layers(self, _widget: Any = None) -> list[Image]:
        return [layer for layer in self.viewer.layers if isinstance(layer, Image)]

    def _regions(self, _widget: Any = None) -> list[str]:
        shapes = [layer.name for layer in self.viewer.layers if isinstance(layer, Shapes)]
        return [WHOLE, VIEW, *(RECTANGLE + name for name in shapes)]

    def _on_layers(self, _event: Any = None) -> None:
        region = self.region.value
        self.region.reset_choices()
        if region in self.region.choices:
            self.region.value = region
        current = self.image.value
        self.image.reset_choices()
        layers = self._image_layers()
        if current in layers:
            self.image.value = current
        elif self.viewer.layers.selection.active in layers:
            self.image.value = self.viewer.layers.selection.active
        elif layers:
            self.image.value = layers[-1]

    def _set_generator(self, name: str) -> None:
        """Choose a generator for the user (it keeps following the image)."""
        self._choosing = True
        try:
            self.generator.value = name
        finally:
            self._choosing = False

    def _default_generator(self, _value: Any = None) -> None:
        layer = self.image.value
        if not self._follow_image or layer is None:
            return
        want = default_for(3 if layer.rgb else 1)
        info = self._generators.get(want)
        if info is not None and info.ok and self.generator.value != want:
            self._set_generator(want)

    def add_generator_file(self, path: str | Path) -> bool:
        """Load a weights file, add it to the generator choices and select it.

        On failure, a notification gives the reader's message and the choice is unchanged.
        """
        key = str(Path(path))
        try:
            gen = load(Path(path))
        except Exception as exc:  # noqa: BLE001 - any reader error is the user's file
            show_error(f"Cannot use {Path(path).name} as a generator: {exc}")
            self._restore_generator()
            return False
        if key not in self._generators:
            self._generators[key] = GeneratorInfo(
                gen.name, f"{gen.describe()} (from {key})", lambda: gen, source=key
            )
            self._gen_choices.insert(-1, (f"{gen.name} ({Path(path).name})", key))
            self.generator.reset_choices()
        self.generator.value = key
        return True

    def _ask_generator_file(self) -> None:
        from qtpy.QtWidgets import QFileDialog

        path, _ = QFileDialog.getOpenFileName(
            self.native, "Generator weights", "", f"Generators ({GENERATOR_FILES});;All files (*)"
        )
        if path:
            self.add_generator_file(path)
        else:
            self._restore_generator()

    def _restore_generator(self) -> None:
        if self.generator.value == FROM_FILE and self._gen_current is not None:
            self.generator.value = self._gen_current

    def _on_generator(self, name: str | None) -> None:
        if not self._choosing:
            self._follow_image = False  # the user's choice stands
        if name == FROM_FILE:
            self._ask_generator_file()
            return
        self._gen_current = name
        info = self._generators.get(name) if name else None
        previous = self.factor.value
        if info is None or not info.ok:
            reason = info.reason if info is not None else "no generator installed"
            self.generator_info.value = f"unavailable: {reason}"
            self.generator_info.tooltip = reason
            self._set_factors([])
            self.run_button.enabled = False
            return
        try:
            gen = load(Path(name) if info.source == name else name)
        except Exception as exc:  # noqa: BLE001 - a broken plugin generator must not crash the GUI
            self.generator_info.value = f"cannot load: {exc}"
            self._set_factors([])
            self.run_button.enabled = False
            return
        h, w = gen.resolution
        self.generator_info.value = f"{h}x{w}, {'RGB' if gen.channels == 3 else 'grayscale'}"
        self.generator_info.tooltip = info.summary
        choices = list(range(2, min(h, w) // 2 + 1))
        self._set_factors(choices)
        if previous in choices:
            self.factor.value = previous
        else:
            self.factor.value = 4 if 4 in choices else choices[-1]
        self.run_button.enabled = self.job is None

    def _set_factors(self, factors: list[int]) -> None:
        self._factors = factors
        self.factor.reset_choices()

    def _on_quality(self, preset: str) -> None:
        self.steps.value, self.restarts.value = PRESETS[preset]

    def _on_advanced(self, show: bool) -> None:
        for w in (
            self.steps,
            self.restarts,
            self.samples,
            self.eps,
            self.seed,
            self.realism,
            self.bank,
            self.quick,
            self.guided,
        ):
            w.visible = show
        self.radius.visible = show and self.mode.value == "intermediate"

    # -- running --------------------------------------------------------------------------

    def options(self) -> Options:
        """The widget's choices as the options of one upscale (checked: a bad combination
        raises the core's ``ValueError``)."""
        quick, guided = bool(self.quick.value), bool(self.guided.value)
        return Options(
            generator=self.generator.value,
            factor=self.factor.value,
            degradation=self.degradation.value,
            sigma=float(self.sigma.value) if self.degradation.value == "psf" else None,
            steps=int(self.steps.value),
            restarts=int(self.restarts.value),
            samples=int(self.samples.value),
            eps=float(self.eps.value),
            seed=int(self.seed.value),
            device=self.device.value,
            mode=self.mode.value,
            realism=float(self.realism.value),
            config=starts_config(int(self.bank.value), quick, guided),
            intermediate=IntermediateConfig(radius=float(self.radius.value)),
        )

    def _region_box(self, layer: Image, region: str) -> tuple[slice, slice]:
        """Rows and columns of ``layer``'s data inside the chosen region."""
        h, w = layer.data.shape[layer.ndim - 2 : layer.ndim]
        if region == WHOLE:
            return slice(0, h), slice(0, w)
        if region == VIEW:
            if self.viewer.dims.ndisplay != 2 or list(self.viewer.dims.displayed)[-2:] != [
                self.viewer.dims.ndim - 2,
                self.viewer.dims.ndim - 1,
            ]:
                raise ValueError("'field of view' needs the 2D view of the image's Y and X axes.")
            lo, hi = np.asarray(layer.corner_pixels)[:, -2:]
        elif region.startswith(RECTANGLE):
            name = region[len(RECTANGLE) :]
            if name not in self.viewer.layers or not len(self.viewer.layers[name].data):
                raise ValueError(f"Draw a rectangle in the Shapes layer {name!r} first.")
            shapes = self.viewer.layers[name]
            picked = sorted(shapes.selected_data) or [len(shapes.data) - 1]
            world = [shapes.data_to_world(v) for i in picked for v in shapes.data[i]]
            pts = np.array([layer.world_to_data(p) for p in world])[:, -2:]
            lo = np.floor(pts.min(axis=0) + 0.5)
            hi = np.ceil(pts.max(axis=0) - 0.5)
        else:
            raise ValueError(f"Unknown region {region!r}.")
        y0, x0 = (int(np.clip(v, 0, n)) for v, n in zip(lo, (h, w), strict=True))
        y1, x1 = (int(np.clip(v + 1, 0, n)) for v, n in zip(hi, (h, w), strict=True))
        if y1 - y0 < 2 or x1 - x0 < 2:
            raise ValueError(
                f"The {region!r} region covers {max(y1 - y0, 0)}x{max(x1 - x0, 0)} pixels "
                f"of {layer.name!r}; it needs at least 2x2."
            )
        return slice(y0, y1), slice(x0, x1)

    def _input(
        self, layer: Image, all_planes: bool, region: str = WHOLE
    ) -> tuple[np.ndarray, list[int]]:
        """The array to upscale and where it starts in the layer's data indices."""
        if layer.multiscale:
            raise ValueError(
                f"{layer.name!r} is a multiscale (pyramid) layer; upscale a single level."
            )
        n_lead = layer.ndim - 2  # layer.ndim excludes the RGB axis
        rows, cols = self._region_box(layer, region)
        offset = [0] * n_lead + [rows.start, cols.start]
        index: list[slice] = [slice(None)] * n_lead
        if n_lead and not all_planes:
            point = layer.world_to_data(self.viewer.dims.point)
            for axis in range(n_lead):
                i = int(np.clip(np.round(point[axis]), 0, layer.data.shape[axis] - 1))
                index[axis] = slice(i, i + 1)
                offset[axis] = i
        # A lazy layer's (dask, zarr) pixels are read on the worker thread, not here.
        return layer.data[(*index, rows, cols)], offset

    def start(self, layer: Image | None = None, **overrides: Any) -> UpscaleJob | None:
        """Start an upscale of ``layer`` (default: the chosen one) with the widget's choices,
        ``overrides`` replacing any of :meth:`options`. Returns the running job, or None
        when it could not start (the reason is shown as an error notification)."""
        if self.job is not None:
            self._error("An upscale is already running; cancel it first.")
            return None
        layer = layer if layer is not None else self.image.value
        if layer is None:
            self._error("Choose an image layer to upscale.")
            return None
        all_planes = overrides.pop("all_planes", self.all_planes.value)
        region = overrides.pop("region", self.region.value)
        try:
            opts = replace(self.options(), **overrides, rgb=bool(layer.rgb))
            data, offset = self._input(layer, all_planes, region)
        except Exception as exc:  # noqa: BLE001 - reported to the user, never a traceback
            self._error(str(exc))
            return None
        source = {
            "source_name": layer.name,
            "scale": tuple(layer.scale),
            "translate": tuple(layer.translate),
            "rgb": bool(layer.rgb),
            "offset": offset,
            "colormap": None if layer.rgb else layer.colormap,
            "contrast_limits": None if layer.rgb else tuple(layer.contrast_limits),
        }
        stream_of, where = _stream_for(data, rgb=bool(layer.rgb))
        self.job = UpscaleJob(
            data,
            opts,
            on_result=lambda result: self._add_result(result, opts, source),
            on_error=lambda exc: self._error(str(exc) or type(exc).__name__),
            on_done=self._done,
            on_progress=lambda event: self._show_preview(event, opts, source),
            description=f"Upscaling {layer.name} x{opts.factor}",
            stream_of=stream_of,
        )
        self.run_button.enabled = False
        self.cancel_button.enabled = True
        self.status.value = f"upscaling {layer.name} x{opts.factor}{where}..."
        return self.job.start()

    def _bound_sigma(self, factor: int | None) -> None:
        """The psf's sigma goes up to what the engine accepts at this factor."""
        if factor:
            self.sigma.max = MAX_SIGMA_PER_FACTOR * int(factor)

    def cancel(self) -> None:
        """Stop the running upscale within one optimiser step; the layer list stays as it was."""
        if self.job is not None:
            self.job.cancel()
            self.status.value = "cancelling..."

    def _show_preview(self, event: Any, opts: Options, source: dict[str, Any]) -> None:
        """Live preview: a layer that shows the current best image while the search runs
        (and a note about the whole job, when the stream has one, in the status line)."""
        if getattr(event, "note", "") and self.job is not None and not self.job.cancelled:
            self.status.value = event.note
        if event.preview is None or self.job is None or self.job.cancelled:
            return  # also a late event, handled after the job was done
        image = event.preview()
        if self._preview is not None and self._preview in self.viewer.layers:
            self._preview.data = image
            return
        data, meta = preview_layer(
            image,
            generator=_generator_name(opts, self._generators),
            factor=opts.factor,
            **source,
        )
        self._preview = self.viewer.add_image(data, **meta)

    def _drop_preview(self) -> None:
        if self._preview is not None and self._preview in self.viewer.layers:
            self.viewer.layers.remove(self._preview)
        self._preview = None

    def _add_result(self, result: Any, opts: Options, source: dict[str, Any]) -> None:
        self._drop_preview()
        name = _generator_name(opts, self._generators)
        tuples = result_layers(result, generator=name, factor=opts.factor, **source)
        added = [self.viewer.add_image(data, **meta) for data, meta, _ in tuples]
        self.viewer.layers.selection.active = added[0]
        msg = f"{added[0].name}: low-res PSNR {result.lr_psnr:.1f} dB"
        expected = result.expected_rms() if hasattr(result, "expected_rms") else None
        if expected is not None:
            msg += f", expected error {expected[1]:.1%} of the range (its expected-error layer)"
        self.status.value = msg
        if result.success:
            show_info(msg)
        else:
            show_warning(NOT_EXPLAINED.format(psnr=result.lr_psnr))
        for message in result.warnings():
            show_warning(f"{added[0].name}: {message}")

    def _error(self, message: str) -> None:
        self.status.value = f"error: {message}"
        show_error(message)

    def _done(self) -> None:
        self._drop_preview()  # cancelled or failed: the viewer is left as it was
        if self.job is not None and self.job.cancelled:
            self.status.value = "cancelled; nothing was added"
        self.job = None
        self.cancel_button.enabled = False
        self.run_button.enabled = bool(self._factors)


def _stream_for(data: Any, rgb: bool) -> tuple[Any, str]:
    """How a run's events are made, and where it runs in words: a stack's planes go to the
    Dask cluster of ``$NAPARI_PULSE_SCHEDULER`` when it is set
    (:func:`~napari_pulse.batch.iter_stack`), anything else runs in this process."""
    address = os.environ.get(SCHEDULER_ENV)
    lead = data.shape[: -3 if rgb or has_single_channel(data.shape, rgb) else -2]
    planes = int(np.prod(lead))
    if not address or planes < 2:
        return iter_upscale, ""
    from ..batch import iter_stack  # distributed is imported only when it is used

    return partial(iter_stack, scheduler=address), f" on the Dask cluster at {address}"


def _generator_name(opts: Options, known: dict[str, GeneratorInfo]) -> str:
    """The generator's name for layer names: a file's card name rather than its path."""
    gen = opts.generator
    if not isinstance(gen, str):
        return gen.name
    return known[gen].name if gen in known else gen
