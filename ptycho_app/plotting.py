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
        ``label -> dict(object=(N, N) complex, eigenvalues=(r,) real, losses=(T,) real, loss_name=str)``
        (``loss_name``: the loss's name, default intensity).
    title : str
    """
    rows = ([("ground truth", truth)] if truth is not None else []) + [
        (label, align_global_phase(r["object"], truth) if truth is not None else r["object"])
        for label, r in results.items()
    ]
    amplitude_max = max(np.abs(obj).max() for _, obj in rows)
    fig, axes = plt.subplots(2, len(rows) + 1, figsize=(3.2 * (len(rows) + 1), 6.4))
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
    draw_spectra_and_losses(axes[0, -1], axes[1, -1], results)
    axes[0, -1].axhline(1e-16, color="0.7", lw=0.8, ls=":")
    save_figure(fig, path, title)


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
