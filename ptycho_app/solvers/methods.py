"""Factorization methods: one class each, behind one small protocol, found by name in :data:`METHODS`.

A method says how the factors ``(U, d)`` of ``X = U diag(d) U^*`` move, given ``G U`` (``G`` the
gradient of the loss in ``X``, from the operator's fused pass):

- :meth:`Method.gradients`: the gradients in ``U`` and ``d`` (``None`` for a fixed ``d``);
- :meth:`Method.project`: back onto the feasible set after a step;
- :attr:`Method.records`: which options its results record (``radius``, ``step_d``).

The driver (:func:`ptycho_app.solvers.iterate`) adds everything that is not the method's own:
steps, preconditioners, momentum, starts, stopping.  A new factorization is one new class here.
"""

from __future__ import annotations

import torch


def frobenius_norm(U: torch.Tensor) -> torch.Tensor:
    """(B, 1, 1) ``||U_k||_F`` (``linalg.vector_norm`` over two axes of a complex tensor is ~40x slower on CPU)."""
    parts = torch.view_as_real(U) if U.is_complex() else U
    return parts.square().sum(dim=tuple(range(1, parts.dim()))).sqrt().reshape(-1, 1, 1)


class Method:
    """Protocol of a factorization method (subclasses set the attributes and override the methods).

    Attributes
    ----------
    name : str
        Its name in options, result files and file names.
    title : str
        One line for help texts and figures.
    records : tuple of str
        Options that belong to this method and are recorded in its results (default steps per
        method and loss: ``options.DEFAULT_STEP``).
    """

    name = ""
    title = ""
    records: tuple = ()

    def gradients(self, U, d, GU):
        """Gradients of the loss in ``U`` (B, n, r) and ``d`` (B, r) (``None``: ``d`` is fixed)."""
        raise NotImplementedError

    def project(self, U, d, radius):
        """The feasible point for ``(U, d)`` (in place allowed); returns ``(U, d)``."""
        return U, d


class BurerMonteiro(Method):
    """BM: ``X = U U^*``, gradient descent on ``U`` (Gunasekar et al. 2017); ``d`` stays 1."""

    name = "bm"
    title = "BM (X = U U^*)"
    records = ()

    def gradients(self, U, d, GU):
        return 2 * GU, None


class UDU(Method):
    """UDU: ``X = U diag(d) U^*``, ``||U||_F <= radius``, ``d >= 0``, projected gradient descent
    (Hou, Sra, Yurtsever 2025): ``grad_U = 2 G U diag(d)``, ``grad_d = diag(U^* G U)``; ``U`` is scaled
    back into the ball and ``d`` clipped at 0."""

    name = "udu"
    title = "UDU (X = U D U^*)"
    records = ("radius", "step_d")

    def gradients(self, U, d, GU):
        return 2 * GU * d[:, None, :], (U.conj() * GU).sum(dim=1).real

    def project(self, U, d, radius):
        shrink = (radius / frobenius_norm(U)).clamp(max=1)
        return U * shrink, d.clamp(min=0)


#: Registry: name -> method instance.
METHODS = {method.name: method for method in (BurerMonteiro(), UDU())}


def get_method(name: str) -> Method:
    """The method called ``name``."""
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {name!r}") from None
