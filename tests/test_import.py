"""The core library must not pull in napari or a Qt binding (headless use, CLI, servers)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

GUI = ("napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6")

CORE = [
    "napari_pulse",
    "napari_pulse.api",
    "napari_pulse.cli",  # only if it exists
    "napari_pulse.degrade",
    "napari_pulse.events",
    "napari_pulse.generators",
    "napari_pulse.imageio",  # only if it exists
    "napari_pulse.intensity",
    "napari_pulse.search",
    "napari_pulse.tiling",
]

# Imports the modules one by one in a fresh interpreter and reports, after each, which GUI
# modules are loaded. One subprocess for all: importing torch dominates the cost.
SCRIPT = """
import importlib, json, sys
gui, modules, setup = json.loads(sys.argv[1])
exec(setup)
report = {}
for name in modules:
    importlib.import_module(name)
    report[name] = sorted(m for m in sys.modules if m.split(".")[0] in gui)
print(json.dumps(report))
"""


def _gui_modules_after_import(modules: list[str], setup: str = "") -> dict[str, list[str]]:
    arg = json.dumps([list(GUI), modules, setup])
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, arg],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_core_imports_no_gui():
    present = [m for m in CORE if m == "napari_pulse" or importlib.util.find_spec(m) is not None]
    assert "napari_pulse.api" in present
    report = _gui_modules_after_import(present)
    assert list(report) == present
    assert {m: gui for m, gui in report.items() if gui} == {}


def test_the_check_detects_a_gui_module():
    # Guard against a check that cannot fail: a loaded Qt binding must be reported.
    report = _gui_modules_after_import(["json"], "sys.modules['PyQt6'] = sys")
    assert report == {"json": ["PyQt6"]}
