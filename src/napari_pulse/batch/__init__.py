"""Many images at once on Dask: files, globs, folders, stacks and zarr arrays upscaled on a
local cluster or an existing one, with outputs written atomically, complete ones skipped
on a rerun, failures reported, and pixels equal to ``upscale``'s (see :func:`batch`); and
one stack there, its planes shown as they finish (:func:`iter_stack`)."""

from .report import REPORT_NAME, Entry, Report
from .run import batch
from .stack import iter_stack

__all__ = ["REPORT_NAME", "Entry", "Report", "batch", "iter_stack"]
