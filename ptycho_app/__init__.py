"""ptycho-app: Fourier ptychography reconstruction by lifting, with BM and UDU factorizations.

Layout: :mod:`~ptycho_app.physics` (acquisition, FP operator, simulator),
:mod:`~ptycho_app.lifting` (lifted operators), :mod:`~ptycho_app.solvers` (BM and UDU),
:mod:`~ptycho_app.analysis` (eigenvalues, object, metrics), :mod:`~ptycho_app.cli`.
"""

__version__ = "0.1.0"
