"""Fixtures shared by the lm336 tests. Independent torch.nn/torch.nn.functional references live
in lm_reference.py (a plain module the tests import)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def single_thread():
    """One intra-op thread: these tensors are tiny, and on a shared 2-core machine a second thread
    spinning against other processes makes small matmuls 10-40x slower. Modules opt in with
    `pytestmark = pytest.mark.usefixtures("single_thread")`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
