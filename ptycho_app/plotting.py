"""Figures people look at: reconstructions side by side, eigenvalue spectra, loss curves."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .analysis import align_global_phase  # noqa: E402
from .io import atomic_path  # noqa: E402


def comparison_figure(path, truth, results, title=""):
    """Write a PNG comparing reconstructions.

    Parameters
    ----------
    path : str or Path
        Output PNG (written atomically).
    truth : (N, N) complex or None
        Ground truth (band-limited); its row is left out when ``None``.
    results : dict
        ``label -> dict(object=(N, N) complex, eigenvalues=(r,) real, losses=(T,) real, loss_name=str,
        pupil=(M, M) complex or None)`` (``loss_name``: the loss's name, default intensity; ``pupil``: a
        recovered pupil, drawn in a column of its own after the objects: amplitude, and the phase inside
        its support).
    title : str
    """
    rows = ([("ground truth", truth)] if truth is not None else []) + [
        (label, align_global_phase(r["object"], truth) if truth is not None else r["object"])
        for label, r in results.items()
    ]
    amplitude_max = max(np.abs(obj).max() for _, obj in rows)
    pupils = [(label, r["pupil"]) for label, r in results.items() if r.get("pupil") is not None]
    columns = len(rows) + len(pupils) + 1
    fig, axes = plt.subplots(2, columns, figsize=(3.2 * columns, 6.4))
    for column, (label, obj) in enumerate(rows):
        image = axes[0, column].imshow(np.abs(obj), cmap="gray", vmin=0, vmax=amplitude_max)
        axes[0, column].set_title(f"{label}\namplitude")
        phase = axes[1, column].imshow(np.angle(obj), cmap="twilight", vmin=-np.pi, vmax=np.pi)
        axes[1, column].set_title("phase")
        for ax in axes[:, column]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.colorbar(image, ax=axes[0, len(rows) - 1], fraction=0.046)
    fig.colorbar(phase, ax=axes[1, len(rows) - 1], fraction=0.046)
    for column, (label, pupil) in enumerate(pupils, start=len(rows)):
        draw_pupil(axes[0, column], axes[1, column], pupil, label)
    draw_spectra_and_losses(axes[0, -1], axes[1, -1], results)
    axes[0, -1].axhline(1e-16, color="0.7", lw=0.8, ls=":")
    save_figure(fig, path, title)


def draw_pupil(amplitude_ax, phase_ax, pupil, label=""):
    """A recovered pupil: its amplitude, and its aberration phase (unwrapped, piston removed) inside its
    support only (outside: blank), cropped to the support, with colour bars and the RMS phase in the title."""
    from .calibration.summary import pupil_phase

    phase = pupil_phase(pupil)
    inside = np.isfinite(phase)
    rms = float(np.sqrt(np.mean(phase[inside] ** 2))) if inside.any() else 0.0
    if inside.any():  # the support and a margin of 2 pixels fill the panel
        rows, cols = (np.flatnonzero(inside.any(axis=axis)) for axis in (1, 0))
        crop = (slice(max(rows[0] - 2, 0), rows[-1] + 3), slice(max(cols[0] - 2, 0), cols[-1] + 3))
        pupil, phase = np.asarray(pupil)[crop], phase[crop]
    image = amplitude_ax.imshow(np.abs(pupil), cmap="gray", vmin=0)
    amplitude_ax.set_title(f"{label} pupil\namplitude")
    fig = amplitude_ax.figure
    fig.colorbar(image, ax=amplitude_ax, fraction=0.046)
    bound = max(float(np.nanmax(np.abs(phase))) if inside.any() else 0.0, 1e-3)
    shown = phase_ax.imshow(np.ma.masked_invalid(phase), cmap="coolwarm", vmin=-bound, vmax=bound)
    phase_ax.set_title(f"pupil phase (rad)\nRMS {rms:.3f} inside the support")
    fig.colorbar(shown, ax=phase_ax, fraction=0.046)
    for ax in (amplitude_ax, phase_ax):
        ax.set_xticks([])
        ax.set_yticks([])


def draw_spectra_and_losses(spectrum_ax, loss_ax, results, marker_size=None):
    """Eigenvalues / lambda_1 (log scale) and loss curves (log-log) of each result."""
    for label, r in results.items():
        values = np.asarray(r["eigenvalues"], dtype=np.float64)
        relative = np.maximum(values / values.max(), 1e-17)
        spectrum_ax.semilogy(np.arange(1, len(values) + 1), relative, "o-", ms=marker_size, label=label)
        loss_ax.loglog(np.arange(1, len(r["losses"]) + 1), r["losses"], label=label)
    singular = any(r.get("singular") for r in results.values())  # asymmetric sense results
    spectrum_ax.set_title("singular values of X / sigma_1" if singular else "eigenvalues of X / lambda_1")
    spectrum_ax.set_xlabel("index")
    spectrum_ax.legend()
    names = sorted({r.get("loss_name") or "intensity" for r in results.values()})
    loss_ax.set_title(f"{' / '.join(names)} loss")
    loss_ax.set_xlabel("iteration")
    loss_ax.legend()


def save_figure(fig, path, title=""):
    """Title, tight layout, PNG written atomically, figure closed."""
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def spectra_figure(path, results, title=""):
    """Write a PNG of eigenvalue spectra (log scale) and loss curves (matrix problems, no image).

    Parameters
    ----------
    path : str or Path
    results : dict
        ``label -> dict(eigenvalues=(r,) real, losses=(T,) real)``.
    title : str
    """
    fig, (spectrum_ax, loss_ax) = plt.subplots(1, 2, figsize=(9, 3.8))
    draw_spectra_and_losses(spectrum_ax, loss_ax, results, marker_size=3)
    save_figure(fig, path, title)
