"""What a batch did with each input, as a summary and as ``batch-report.json`` beside the
outputs."""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPORT_NAME = "batch-report.json"


@dataclass
class Entry:
    """One input: ``done``, ``skipped`` (its outputs were complete), ``failed`` (with the
    error) or ``pending`` (not reached: the batch was interrupted). ``blocks_saved``: of a
    large input's blocks, those an earlier run had finished and this one did not search
    again. ``expected_error``: the expected error's RMS as a share of the intensity range
    (:meth:`~napari_pulse.result.Result.expected_rms`; None without an error model)."""

    input: str
    status: str = "pending"
    seconds: float | None = None
    lr_psnr: float | None = None
    success: bool | None = None
    in_domain: bool | None = None
    expected_error: float | None = None
    planes: int | None = None
    blocks: int | None = None
    blocks_saved: int | None = None
    outputs: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class Report:
    """Every input's entry, in the order given, and how the batch ran."""

    outdir: Path
    entries: dict[str, Entry] = field(default_factory=dict)
    workers: int = 0
    scheduler: str = ""
    seconds: float = 0.0
    interrupted: bool = False

    def entry(self, source: Path) -> Entry:
        key = str(source)
        if key not in self.entries:
            self.entries[key] = Entry(key)
        return self.entries[key]

    def count(self, status: str) -> int:
        return sum(e.status == status for e in self.entries.values())

    @property
    def failed(self) -> list[Entry]:
        return [e for e in self.entries.values() if e.status == "failed"]

    @property
    def ok(self) -> bool:
        """Every input done or skipped."""
        return all(e.status in ("done", "skipped") for e in self.entries.values())

    def summary(self) -> str:
        """One line: how many inputs of each status, and the time taken."""
        parts = [f"{self.count(s)} {s}" for s in ("done", "skipped", "failed", "pending")]
        parts = [p for p in parts if not p.startswith("0 ")] or ["nothing to do"]
        return f"{len(self.entries)} inputs: {', '.join(parts)} in {self.seconds:.1f} s"

    def as_dict(self) -> dict[str, Any]:
        return {
            "outdir": str(self.outdir),
            "workers": self.workers,
            "scheduler": self.scheduler,
            "seconds": self.seconds,
            "interrupted": self.interrupted,
            "summary": self.summary(),
            "inputs": [asdict(e) for e in self.entries.values()],
        }

    def write(self) -> Path:
        """``OUTDIR/batch-report.json``, written atomically."""
        path = self.outdir / REPORT_NAME
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
        tmp.write_text(json.dumps(self.as_dict(), indent=2, allow_nan=True) + "\n")
        os.replace(tmp, path)
        return path
