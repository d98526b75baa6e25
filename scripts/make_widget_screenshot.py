"""Screenshot of napari with the Upscale (PULSE) widget docked and a real result.

Run from the repository root (needs the face generator's weights and a display; on a
headless machine: ``xvfb-run -a .venv/bin/python scripts/make_widget_screenshot.py``).
Opens the bundled 8x8 face sample, upscales it x8 with ``faces-dcgan64`` through the
widget (as a user would click it, "balanced" quality, 4 samples) and writes
``docs/widget.png``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "widget.png"


def main() -> None:
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1600, 820)
    viewer.open_sample("napari-pulse", "face")
    _, widget = viewer.window.add_plugin_dock_widget("napari-pulse", "Upscale (PULSE)")
    widget.generator.value = "faces-dcgan64"
    widget.factor.value = 8
    widget.quality.value = "balanced"
    widget.advanced.value = True
    widget.samples.value = 4
    widget.native.parent().setMaximumWidth(430)
    start = time.perf_counter()
    widget.run_button.changed.emit(True)
    app = QApplication.instance()
    while widget.job is not None:
        app.processEvents()
        time.sleep(0.02)
    print(f"upscaled in {time.perf_counter() - start:.1f} s: {widget.status.value}")
    # Side by side (the result layers overlay the source exactly, which hides it):
    # the 8x8 input, the x8 result and the spread of 4 samples (bright = invented).
    viewer.layers[-1].visible = True
    viewer.layers.selection.active = viewer.layers[1]
    grid = viewer.canvas.grid
    grid.enabled, grid.shape, grid.stride = True, (1, 3), 1
    viewer.reset_view()
    for _ in range(120):  # let the "done" notification fade before the screenshot
        app.processEvents()
        time.sleep(0.05)
    OUT.parent.mkdir(exist_ok=True)
    viewer.screenshot(str(OUT), canvas_only=False, flash=False)
    print(f"wrote {OUT}")
    viewer.close()
    sys.exit(0)


if __name__ == "__main__":
    main()
