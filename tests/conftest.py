"""Shared fixtures."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Run a module's torch work on one thread, then restore the setting.

    The tensors in these tests are tiny: one thread is faster, and far faster on a busy
    2-core machine, where two threads contend with everything else.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
