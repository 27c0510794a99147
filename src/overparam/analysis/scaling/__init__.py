"""Scaling-law fitting and the size advisor (``overparam fit``, ``overparam advise``).

Laws (``--law``), each a scikit-learn-style fitter (``base.py`` states the contract):

=======================  =====================================================  ==================
law                      form                                                   fitter
=======================  =====================================================  ==================
``chinchilla``           L = E + A/N^α + B/D^β (Approach 3, Besiroglu refit)    ChinchillaFitter
``chinchilla-envelope``  Approach 1: loss-compute envelope -> N*(C), D*(C)      EnvelopeFitter
``chinchilla-isoflop``   Approach 2: IsoFLOP parabolas -> N*(C), D*(C)          IsoFLOPFitter
``kaplan``               L = [(N_c/N)^(α_N/α_D) + D_c/D]^α_D                    KaplanFitter
``power``                L = E + A/X^α, X = params, tokens or flops             PowerLawFitter
``bnsl``                 broken power law (Caballero et al. 2022)               BrokenPowerLawFitter
=======================  =====================================================  ==================
"""

from overparam.analysis.scaling.advise import advise
from overparam.analysis.scaling.allocation import EnvelopeFitter, IsoFLOPFitter
from overparam.analysis.scaling.api import (
    LAWS,
    ScalingFit,
    diminishing_returns,
    extrapolation_backtest,
    fit_scaling_law,
    make_fitter,
)
from overparam.analysis.scaling.base import NotFittedError, ScalingLawFitter
from overparam.analysis.scaling.bnsl import BrokenPowerLawFitter
from overparam.analysis.scaling.chinchilla import (
    ChinchillaFitter,
    allocation_exponents,
    allocation_for_loss,
    optimal_allocation,
)
from overparam.analysis.scaling.points import (
    load_epoch_chinchilla,
    load_points,
    points_from_sweep,
    prepare_points,
)
from overparam.analysis.scaling.power import KaplanFitter, PowerLawFitter

__all__ = [
    "LAWS",
    "BrokenPowerLawFitter",
    "ChinchillaFitter",
    "EnvelopeFitter",
    "IsoFLOPFitter",
    "KaplanFitter",
    "NotFittedError",
    "PowerLawFitter",
    "ScalingFit",
    "ScalingLawFitter",
    "advise",
    "allocation_exponents",
    "allocation_for_loss",
    "diminishing_returns",
    "extrapolation_backtest",
    "fit_scaling_law",
    "load_epoch_chinchilla",
    "load_points",
    "make_fitter",
    "optimal_allocation",
    "points_from_sweep",
    "prepare_points",
]
