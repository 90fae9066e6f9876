"""Starting factors: the papers' small random start, the spectral start and the FP frame start.

What each does to the implicit bias (docs/solvers.md has the measurements):

- ``random`` (the papers'): ``U0 = xi * randn / ||randn||_F``, ``d0 = 1``.  Every column starts
  small, gradient descent first grows the top eigendirection of ``A^*(b)`` (a plateau at the saddle
  ``X = 0``), and the small start is what biases BM towards low rank (Gunasekar et al. 2017).
- ``spectral``: the first column is the top eigenvector of ``A^*(b)`` (already found by the
  step normalization's power iteration), scaled by least squares; the other columns are the small
  random start.  It skips the plateau; the surplus columns keep the small start, and with it BM's
  bias and UDU's collapse.
- ``frame`` (FP): the first column is the on-axis frame's amplitude seen through the pupil (the
  classical FP start), scaled by least squares; the other columns as above.

The non-random starts are masked to the operator's support (FP: the synthetic aperture), where
the data say anything at all.  For UDU the first column starts on the ball's surface (norm
``radius``) with ``d0 = 1``, as in the authors' start: ``X0`` is then smaller than the data ask for,
``d`` grows and ``U`` presses against the ball, and that pressure is what collapses the surplus
columns (docs/solvers.md).
"""

from __future__ import annotations

import torch

from .methods import frobenius_norm


def random_factors(n, rank, batch, xi, seed, dtype, device):
    """The authors' start, one reproducible draw per problem.

    Parameters
    ----------
    n, rank, batch : int
    xi : float
        ``||U0||_F``.
    seed : int or sequence of int
        Problem ``k`` uses ``seed + k`` or ``seed[k]``.
    dtype : torch.dtype
    device : torch.device

    Returns
    -------
    U0 : (B, n, r) dtype
        ``xi * randn / ||randn||_F`` (circular complex Gaussian for complex dtypes).
    d0 : (B, r) real
        Ones.
    """
    seeds = [seed + k for k in range(batch)] if isinstance(seed, int) else list(seed)
    if len(seeds) != batch:
        raise ValueError(f"got {len(seeds)} seeds for a batch of {batch}")
    wide = torch.complex128 if dtype.is_complex else torch.float64
    draws = [torch.randn(n, rank, dtype=wide, generator=torch.Generator().manual_seed(int(s)))
             for s in seeds]
    U0 = torch.stack(draws)
    U0 = xi * U0 / torch.linalg.vector_norm(U0, dim=(1, 2), keepdim=True)
    real = torch.empty((), dtype=dtype).real.dtype
    return U0.to(dtype=dtype, device=device), torch.ones(batch, rank, dtype=real, device=device)


def fitted_scale(operator, vectors, b):
    """(B,) ``s >= 0`` minimizing ``||s A(v v^*) - b||`` for unit vectors ``v`` (B, n)."""
    q = operator.measure(vectors[:, :, None], torch.ones(vectors.shape[0], 1, dtype=b.dtype, device=b.device))
    tiny = torch.finfo(b.dtype).tiny
    return ((q * b).flatten(1).sum(1) / q.flatten(1).square().sum(1).clamp_min(tiny)).clamp_min(0)


def guided_factors(operator, b, vectors, options, method_names):
    """A start whose first column is ``vectors`` (scaled to fit ``b``), the rest the small random start.

    Parameters
    ----------
    operator : LiftedOperator
    b : (B, *measurement_shape) real
        Normalized measurements.
    vectors : (B, n)
        Direction of the first column (any norm).
    options : SolverOptions
    method_names : tuple of str
        Each problem's method (UDU keeps the first column inside its ball).

    Returns
    -------
    U0 : (B, n, r), d0 : (B, r)
    """
    batch = b.shape[0]
    U, d = random_factors(operator.n, options.rank, batch, options.xi, options.seed, operator.dtype,
                          operator.device)
    support = operator.support()
    vectors = vectors.to(dtype=operator.dtype, device=operator.device)
    if support is not None:
        U = U * support[None, :, None]
        vectors = vectors * support[None, :]
    tiny = torch.finfo(d.dtype).tiny
    unit = vectors / torch.linalg.vector_norm(vectors, dim=1, keepdim=True).clamp_min(tiny)
    scale = fitted_scale(operator, unit, b).to(d.dtype)  # X0 = scale * unit unit^*
    udu = torch.tensor([m == "udu" for m in method_names], device=d.device)
    norm = torch.where(udu, torch.full_like(scale, options.radius), scale.sqrt())
    U[:, :, 0] = unit * norm[:, None].to(U.dtype)
    return project_start(U, d, options.radius, udu)


def project_start(U, d, radius, udu):
    """UDU problems' ``U`` scaled into the ball (``d0 = 1``, as the authors start)."""
    inside = (radius / frobenius_norm(U)).clamp(max=1)
    shrink = torch.where(udu[:, None, None], inside, torch.ones_like(inside))
    return U * shrink.to(U.dtype), d


def starting_factors(operator, b, options, method_names, top_eigenvector=None):
    """The start ``options.init`` asks for: ``(U0 (B, n, r), d0 (B, r))``.

    Parameters
    ----------
    operator : LiftedOperator
    b : (B, *measurement_shape) real
        Normalized measurements.
    options : SolverOptions
    method_names : tuple of str
    top_eigenvector : (B, n, 1), optional
        Of ``A^*(b)``, for the spectral start (computed when not given).
    """
    if options.init == "random":
        return random_factors(operator.n, options.rank, b.shape[0], options.xi, options.seed, operator.dtype,
                              operator.device)
    if options.init == "spectral":
        if top_eigenvector is None:
            from .normalization import largest_eigenvalue
            top_eigenvector = largest_eigenvalue(operator, b, return_vector=True)[1]
        return guided_factors(operator, b, top_eigenvector[:, :, 0], options, method_names)
    return guided_factors(operator, b, operator.frame_start(b), options, method_names)
