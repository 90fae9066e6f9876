"""ptycho-app: Fourier ptychography reconstruction by lifting, with BM and UDU factorizations.

Layout: :mod:`~ptycho_app.physics` (acquisition, FP operator, simulator),
:mod:`~ptycho_app.lifting` (lifted operators and losses), :mod:`~ptycho_app.solvers` (methods BM
and UDU, starts, normalization, the driver, options and presets), :mod:`~ptycho_app.session` (the
one run path of every front end), :mod:`~ptycho_app.analysis` (eigenvalues, object, metrics),
:mod:`~ptycho_app.cli`.
"""

__version__ = "0.3.1"
