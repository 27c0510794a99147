"""Test-wide settings: numpy's BLAS on one thread (the suite runs on 2 shared cores; torch keeps its own)."""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OVERPARAM_TEST", "1")

import pytest  # noqa: E402 (after the environment settings above, which must precede any BLAS import)
import torch  # noqa: E402


@pytest.fixture
def one_thread():
    """Timings and GEMM blocking as on a 1-core CI runner (and no OpenMP spinning under load).

    Modules whose exactness tests compare fused with sequential GEMMs use it for every test:
    ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
