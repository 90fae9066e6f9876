"""Data-fit losses of the predicted measurements ``q = A(X)`` against the measurements ``b``.

Every loss is a sum of elementwise terms ``ell(q_i, b_i)``.  The solvers need, per element, its
value and its *weight* ``w_i = d ell / d q_i``: the gradient in ``X`` is then ``G = A^*(w)``, so the
operators' fused pass (``LiftedOperator.evaluate``) computes any loss for the cost of the
least-squares one: ``G U = A^*(w) U`` reuses the fields of ``A(X)``.

| loss | ``ell(q, b)`` | ``w`` |
|---|---|---|
| ``intensity`` | ``1/2 (q - b)^2`` (the papers' loss) | ``q - b`` |
| ``amplitude`` | ``1/2 (sqrt(q + eps) - sqrt(b))^2`` | ``(1 - sqrt(b / (q + eps))) / 2`` |
| ``poisson`` | ``q - b - b log((q + eps) / b)`` (negative log-likelihood, 0 at ``q = b``) | ``1 - b / (q + eps)`` |

Masked measurements (``bind(b, mask)``, False = not used: saturated camera pixels) have zero value
and zero weight in every loss; the mask is sliced by the operators' frame ``block`` like ``b``.

``eps`` (amplitude, poisson) keeps the weights finite where the prediction is dark; it is
``EPS_RELATIVE`` times each problem's mean measurement, so it scales with the data.

Curvature, used to normalize the step (:mod:`ptycho_app.solvers.normalization`): near a solution
the Gauss-Newton curvature of the intensity loss in ``x`` is ``A^*(b)`` (data-weighted: bright
frames dominate), that of the amplitude loss is ``A^*(1)`` (every frame alike, whatever its
brightness) and that of the Poisson loss ``4 A^*(1)`` (near ``q = b``,
``ell_poisson ~ (q - b)^2 / 2b = 4 ell_amplitude``).  With the amplitude loss and the spectral
preconditioner a normalized step of 1 is one parallel alternating-projection step.
"""

from __future__ import annotations

import copy

import torch

#: eps of the amplitude and Poisson losses, relative to each problem's mean measurement.
EPS_RELATIVE = 1e-6


class Loss:
    """Base class: an elementwise loss of predictions ``q`` and measurements ``b``.

    Attributes
    ----------
    name : str
    scale_power : int
        The loss scales as ``tau ** scale_power`` when ``q`` and ``b`` are both multiplied by
        ``tau`` (2 for the intensity loss, 1 for the others); losses are reported in physical units.
    flat_curvature : float or None
        ``None``: the curvature is ``A^*(b)`` (data-weighted); a number ``c``: it is ``c A^*(1)``.
    weight_is_residual : bool
        The weight is ``q - b`` (intensity loss): operators then take ``||q - b||^2`` as twice the
        value instead of another pass over the measurements.
    """

    name = ""
    scale_power = 2
    flat_curvature: float | None = None
    weight_is_residual = False

    #: (B, ...) real 0/1 or None: which measurements count (see :meth:`bind`).
    keep: torch.Tensor | None = None

    def bind(self, b: torch.Tensor, mask: torch.Tensor | None = None) -> "Loss":
        """The loss ready for one batch of (normalized) measurements ``b`` (B, ...).

        ``mask`` (B, ...) bool, like ``b`` (True = used): value and weight are zero where it is
        False (saturated pixels); None uses every measurement.
        """
        return self._with_mask(copy.copy(self), b, mask)

    @staticmethod
    def _with_mask(bound: "Loss", b: torch.Tensor, mask) -> "Loss":
        if mask is not None:
            mask = torch.as_tensor(mask, device=b.device)
            if tuple(mask.shape) != tuple(b.shape):
                raise ValueError(f"mask has shape {tuple(mask.shape)}, the measurements {tuple(b.shape)}")
            bound.keep = mask.to(b.dtype)
        return bound

    def _keep(self, block):
        """The mask's 0/1 values for a block of frames (axis 1), or None."""
        if self.keep is None or block is None:
            return self.keep
        return self.keep[:, block]

    def value_and_weight(self, q: torch.Tensor, b: torch.Tensor, block: slice | None = None,
                         overwrite: bool = False):
        """Elementwise value and weight.

        Parameters
        ----------
        q : (B, ...) real
            Predicted measurements (a block of them).
        b : (B, ...) real
            Measurements of the same block.
        block : slice, optional
            Where the block sits along axis 1 of the measurements the loss was bound to (lets a
            loss reuse what it precomputed at :meth:`bind`).
        overwrite : bool
            ``q`` is scratch that the loss may overwrite (the operators' fused pass, which needs
            ``q`` no more): saves allocating frame-sized temporaries on every iteration.

        Returns
        -------
        value : (B,) real
            ``sum ell(q, b)`` over the block, per problem.
        weight : (B, ...) real
            ``d ell / d q``.
        """
        raise NotImplementedError


class IntensityLoss(Loss):
    """``1/2 ||q - b||^2``: the papers' least squares on the measured intensities."""

    name = "intensity"
    scale_power = 2
    weight_is_residual = True

    def value_and_weight(self, q, b, block=None, overwrite=False):
        weight = q.sub_(b) if overwrite else q - b
        keep = self._keep(block)
        if keep is not None:
            weight = weight.mul_(keep) if overwrite else weight * keep
        return 0.5 * torch.linalg.vector_norm(weight.flatten(1), dim=1).square(), weight


class _EpsLoss(Loss):
    """A loss with a per-problem ``eps`` (``EPS_RELATIVE`` x the problem's mean measurement)."""

    scale_power = 1

    def __init__(self, eps: torch.Tensor | None = None):
        self.eps = eps

    def bind(self, b, mask=None):
        mean = b.flatten(1).mean(1).clamp_min(torch.finfo(b.dtype).tiny)
        return self._with_mask(self._bound(b, EPS_RELATIVE * mean.reshape(-1, *[1] * (b.dim() - 1))), b, mask)

    def _bound(self, b, eps):
        return type(self)(eps)

    def _eps(self, q):
        if self.eps is None:
            raise RuntimeError(f"the {self.name} loss must be bound to the measurements first (loss.bind(b))")
        return self.eps.reshape(-1, *[1] * (q.dim() - 1))


class AmplitudeLoss(_EpsLoss):
    """``1/2 ||sqrt(q + eps) - sqrt(b)||^2``: least squares on amplitudes (what alternating
    projection minimizes); every frame weighs alike, so dark-field frames count."""

    name = "amplitude"
    flat_curvature = 1.0

    def __init__(self, eps: torch.Tensor | None = None, root_b: torch.Tensor | None = None):
        super().__init__(eps)
        self.root_b = root_b

    def _bound(self, b, eps):
        return AmplitudeLoss(eps, b.clamp_min(0).sqrt())  # sqrt(b) once, not every iteration

    def value_and_weight(self, q, b, block=None, overwrite=False):
        # q >= 0 (a sum of d_r |psi_r|^2, d >= 0) and eps > 0, so root > 0; b >= 0 is checked by the solver.
        # Five passes over the block and one new frame-sized tensor (the weight) when q may be
        # overwritten: this runs on every frame every iteration.  (Out of place under autograd, which
        # the tests use to check the weight.)
        root_b = self.root_b[:, block] if block is not None and self.root_b is not None else b.clamp_min(0).sqrt()
        in_place = overwrite and not q.requires_grad
        root = q.add_(self._eps(q)).sqrt_() if in_place else (q + self._eps(q)).sqrt()
        half = torch.tensor(0.5, dtype=q.dtype, device=q.device)
        weight = torch.addcdiv(half, root_b, root, value=-0.5)  # (1 - sqrt(b) / root) / 2
        difference = root.sub_(root_b) if in_place else root - root_b
        keep = self._keep(block)
        if keep is not None:  # masked measurements: no value, no weight
            weight = weight.mul_(keep)
            difference = difference.mul_(keep) if in_place else difference * keep
        value = 0.5 * torch.linalg.vector_norm(difference.flatten(1), dim=1).square()
        return value, weight


class PoissonLoss(_EpsLoss):
    """Poisson negative log-likelihood ``sum q - b - b log((q + eps) / b)`` (photon-counting noise)."""

    name = "poisson"
    flat_curvature = 4.0

    def value_and_weight(self, q, b, block=None, overwrite=False):
        shifted = (q + self._eps(q)).clamp_min(torch.finfo(q.dtype).tiny)
        b = b.clamp_min(0)
        terms = q - b - torch.xlogy(b, shifted) + torch.xlogy(b, b)
        weight = 1 - b / shifted
        keep = self._keep(block)
        if keep is not None:  # masked measurements: no value, no weight
            terms, weight = terms * keep, weight * keep
        return terms.flatten(1).sum(1), weight


#: Registry: name -> loss class.
LOSSES = {cls.name: cls for cls in (IntensityLoss, AmplitudeLoss, PoissonLoss)}


def make_loss(name: str) -> Loss:
    """The loss called ``name`` (one of :data:`LOSSES`)."""
    try:
        return LOSSES[name]()
    except KeyError:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {name!r}") from None
