"""The double-descent reading's default tolerances, in a module without numpy or pandas.

``overparam analyze`` and ``overparam report`` show them in ``--help``; the parser of every command
is built at start-up, so importing ``double_descent`` (pandas: ~0.8 s) there would slow every
command, including the one-line errors that must answer before anything heavy loads.
"""

EPS = 0.01  # default train-error tolerance of the threshold (Nakkiran et al. 2019's "≈ 0")
TOLERANCE = 0.01  # the answer's default: 0.01 of error (absolute), 1 % of a loss (relative)
