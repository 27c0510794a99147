"""Test-wide settings: numpy's BLAS on one thread (the suite runs on 2 shared cores; torch keeps its own)."""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OVERPARAM_TEST", "1")
