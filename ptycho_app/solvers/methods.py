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

    #: Whether the method factors a rectangular ``X = U D V^*`` (operators with ``blocks``,
    #: :class:`~ptycho_app.lifting.asymmetric.AsymmetricSensing`) rather than a Hermitian ``X``.
    asymmetric = False

    def project(self, U, d, radius):
        """The feasible point for ``(U, d)`` (in place allowed); returns ``(U, d)``."""
        return U, d

    def bind(self, operator) -> "Method":
        """The method as it runs on ``operator`` (ValueError when it does not fit the operator)."""
        blocks = getattr(operator, "blocks", None)
        if (blocks is not None) != self.asymmetric:
            kind = "an asymmetric (U V^*) problem" if blocks is not None else "a symmetric (U U^*) problem"
            fitting = [m.name for m in METHODS.values() if m.asymmetric == (blocks is not None)]
            raise ValueError(f"method {self.name} does not fit {kind}; use {' or '.join(fitting)}")
        return self


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
        # (2 d as a complex (B, 1, r) factor: one pass over G U, not two mixed-type ones)
        return GU * (2 * d).to(GU.dtype)[:, None, :], (U.conj() * GU).sum(dim=1).real

    def project(self, U, d, radius):
        shrink = (radius / frobenius_norm(U)).clamp(max=1)
        return U * shrink, d.clamp(min=0)


class UV(BurerMonteiro):
    """UV: ``X = U V^*``, gradient descent on both factors from ``xi * randn`` (Soltanolkotabi, Stoger,
    Xie 2023).  On the embedding ``W = [U; V]`` (:mod:`ptycho_app.lifting.asymmetric`) this is BM's
    step: ``2 G W = [G_x V; G_x^* U]``."""

    name = "uv"
    title = "UV (X = U V^*)"
    asymmetric = True


class UDV(UDU):
    """UDV: ``X = U diag(d) V^*``, ``||U||_F, ||V||_F <= radius / sqrt(2)``, ``d >= 0`` (Hou, Sra, Yurtsever 2025).

    On ``W = [U; V]`` the gradients are UDU's (``2 G W diag(d) = [G_x V D; G_x^* U D]``,
    ``diag(W^* G W) = Re diag(U^* G_x V)``); the projection scales ``U`` and ``V`` each into its own
    ball of radius ``radius / sqrt(2)`` (so ``||W||_F <= radius``, UDU's normalization; the split
    ``blocks`` comes from the operator by :meth:`bind`) and clips ``d`` at 0.
    """

    name = "udv"
    title = "UDV (X = U D V^*)"
    asymmetric = True
    blocks = None

    def bind(self, operator) -> "UDV":
        super().bind(operator)
        bound = UDV()
        bound.blocks = tuple(operator.blocks)
        return bound

    def project(self, U, d, radius):
        n1, block_radius = self.blocks[0], radius / 2**0.5  # ||W||_F <= radius, as UDU's U
        top, bottom = U[:, :n1], U[:, n1:]
        top = top * (block_radius / frobenius_norm(top)).clamp(max=1)
        bottom = bottom * (block_radius / frobenius_norm(bottom)).clamp(max=1)
        return torch.cat([top, bottom], dim=1), d.clamp(min=0)


#: Registry: name -> method instance.
METHODS = {method.name: method for method in (BurerMonteiro(), UDU(), UV(), UDV())}


def get_method(name: str) -> Method:
    """The method called ``name``."""
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {name!r}") from None
