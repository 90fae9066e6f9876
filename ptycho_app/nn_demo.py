"""``ptycho-app udv-demo``: a UDV layer and a UV layer trained on a synthetic teacher, then SVD-pruned.

The teacher is a two-layer ReLU network whose hidden weight has rank 4:
``y = a^T relu(B C^T x + c)`` with ``x`` standard Gaussian ``(in,)``, ``C (in, 4)`` orthonormal,
``B (hidden, 4)``, ``a (hidden,)`` and ``c (hidden,)`` Gaussian (fixed seed, no downloads).  Two students
``Linear(relu(first(x)))`` with ``first`` a :class:`~ptycho_app.nn.UDVLinear` or a
:class:`~ptycho_app.nn.UVLinear` of ``units`` units (more than the 4 needed) train from the same seed
with the same minibatch SGD (momentum 0.9); the UDV layer is projected after every step.  Each first
layer is then pruned (:meth:`truncate`) to ``k = 1 .. min(in, hidden, units)`` units and the test
error (mean squared error relative to the test labels' variance) recorded.  The numerical rank of a
layer is where its singular values fall the most: ``argmax_i sigma_i / sigma_{i+1}``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .io import atomic_path
from .nn import UDVLinear, UVLinear

#: Demo sizes: input, hidden width, the teacher's rank, train / test samples, minibatch.
IN_FEATURES, HIDDEN, TEACHER_RANK, N_TRAIN, N_TEST, BATCH = 40, 64, 4, 4096, 4096, 256
#: Training: SGD step, momentum, the UDV balls' radius (chosen on this task; see benchmarks/udv_layer.py).
LR, MOMENTUM, RADIUS = 0.05, 0.9, 2.0


def teacher_data(seed):
    """Train and test sets from the rank-4 teacher: ``(x_train (N, in), y_train (N, 1), x_test, y_test)``."""
    g = torch.Generator().manual_seed(seed)
    C = torch.linalg.qr(torch.randn(IN_FEATURES, TEACHER_RANK, generator=g))[0]
    B = torch.randn(HIDDEN, TEACHER_RANK, generator=g)
    a = torch.randn(1, HIDDEN, generator=g) / HIDDEN**0.5
    c = 0.5 * torch.randn(HIDDEN, generator=g)
    x_train = torch.randn(N_TRAIN, IN_FEATURES, generator=g)
    x_test = torch.randn(N_TEST, IN_FEATURES, generator=g)

    def teacher(x):
        return torch.relu(x @ C @ B.T + c) @ a.T

    return x_train, teacher(x_train), x_test, teacher(x_test)


def student(kind, units, seed):
    """``Sequential(first, ReLU, Linear(hidden, 1))``, ``first`` a UDV (``kind='udv'``) or UV layer."""
    g = torch.Generator().manual_seed(seed + 1)
    torch.manual_seed(seed + 1)  # the second layer's start
    first = (UDVLinear(IN_FEATURES, HIDDEN, units, radius=RADIUS, generator=g) if kind == "udv"
             else UVLinear(IN_FEATURES, HIDDEN, units, generator=g))
    return nn.Sequential(first, nn.ReLU(), nn.Linear(HIDDEN, 1))


@torch.no_grad()
def relative_error(model, x, y):
    """Mean squared error over the variance of ``y``."""
    return float(((model(x) - y) ** 2).mean() / ((y - y.mean()) ** 2).mean())


def train(model, x, y, steps, seed, progress=True, label=""):
    """Minibatch SGD with momentum, the first layer projected (:meth:`project_`) after every step."""
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    g = torch.Generator().manual_seed(seed + 2)
    for _ in tqdm(range(steps), desc=f"training {label}", disable=not progress, leave=False):
        batch = torch.randint(0, len(x), (BATCH,), generator=g)
        loss = ((model(x[batch]) - y[batch]) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        model[0].project_()
    return model


def numerical_rank(sigma):
    """Where the singular values fall the most: ``argmax_i sigma_i / sigma_{i+1}`` (1-based)."""
    sigma = np.maximum(np.asarray(sigma, dtype=np.float64), 1e-300)
    if len(sigma) < 2:
        return len(sigma)
    return int(np.argmax(sigma[:-1] / sigma[1:])) + 1


def pruned_errors(model, x, y):
    """Test error after pruning the first layer to ``k = 1 .. K`` units, ``(K,)``."""
    errors = []
    for k in range(1, len(model[0].singular_values()) + 1):
        errors.append(relative_error(nn.Sequential(model[0].truncate(k), *model[1:]), x, y))
    return errors


def run_udv_demo(out_dir="udv-demo", steps=5000, seed=0, units=32, progress=True, verbose=True):
    """Train both students, prune, print, write ``udv-demo.png`` and ``udv-demo.json`` in ``out_dir``.

    Returns
    -------
    dict
        ``udv`` and ``uv``: ``error`` (unpruned test error), ``singular_values`` ``(K,)``,
        ``numerical_rank``, ``pruned_errors`` ``(K,)`` (index ``k - 1``: ``k`` units kept),
        ``train_seconds``; ``settings``; ``figure`` and ``json`` (the written paths).
    """
    if steps < 1 or units < 1:
        raise ValueError(f"--steps and --units must be at least 1, got {steps} and {units}")
    out = Path(out_dir)
    x_train, y_train, x_test, y_test = teacher_data(seed)
    results = {"settings": dict(steps=steps, seed=seed, units=units, in_features=IN_FEATURES, hidden=HIDDEN,
                                teacher_rank=TEACHER_RANK, n_train=N_TRAIN, n_test=N_TEST, batch=BATCH, lr=LR,
                                momentum=MOMENTUM, radius=RADIUS)}
    for kind in ("udv", "uv"):
        start = time.perf_counter()
        model = train(student(kind, units, seed), x_train, y_train, steps, seed, progress, kind.upper())
        sigma = model[0].singular_values().tolist()
        results[kind] = dict(error=relative_error(model, x_test, y_test), singular_values=sigma,
                             numerical_rank=numerical_rank(sigma), train_seconds=time.perf_counter() - start,
                             pruned_errors=pruned_errors(model, x_test, y_test))
    if verbose:
        print_summary(results)
    results["figure"] = str(out / "udv-demo.png")
    results["json"] = str(out / "udv-demo.json")
    pruning_figure(results["figure"], results)
    with atomic_path(results["json"]) as tmp:
        Path(tmp).write_text(json.dumps(results, indent=1))
    return results


def print_summary(results):
    """Singular values and the pruning table on stdout."""
    for kind in ("udv", "uv"):
        r = results[kind]
        sigma = np.asarray(r["singular_values"])
        print(f"{kind.upper()} layer: test error {r['error']:.4g}, numerical rank {r['numerical_rank']}, "
              f"singular values / sigma_1: " + " ".join(f"{v:.2e}" for v in sigma / sigma[0]))
    print("units kept   UDV test error   UV test error")
    for k, (a, b) in enumerate(zip(results["udv"]["pruned_errors"], results["uv"]["pruned_errors"], strict=True),
                                   start=1):
        print(f"{k:10d}   {a:14.4g}   {b:13.4g}")


def pruning_figure(path, results):
    """PNG: test error vs units kept (both layers, unpruned levels dashed) and the singular values."""
    from .plotting import plt, save_figure

    fig, (error_ax, sigma_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    for kind, color in (("udv", "C0"), ("uv", "C1")):
        r = results[kind]
        kept = np.arange(1, len(r["pruned_errors"]) + 1)
        error_ax.semilogy(kept, r["pruned_errors"], "o-", ms=3, color=color, label=f"{kind.upper()} pruned")
        error_ax.axhline(r["error"], color=color, ls="--", lw=0.8, label=f"{kind.upper()} unpruned")
        sigma = np.asarray(r["singular_values"])
        sigma_ax.semilogy(kept, np.maximum(sigma / sigma[0], 1e-17), "o-", ms=3, color=color,
                          label=f"{kind.upper()} (numerical rank {r['numerical_rank']})")
    error_ax.set_xlabel("units kept after SVD pruning")
    error_ax.set_ylabel("test error (MSE / variance)")
    error_ax.set_title("test error vs units kept")
    error_ax.legend()
    sigma_ax.set_xlabel("index")
    sigma_ax.set_title("singular values of the first layer / sigma_1")
    sigma_ax.legend()
    settings = results["settings"]
    save_figure(fig, path, f"UDV vs UV layer: rank-{settings['teacher_rank']} teacher, {settings['units']} units, "
                f"{settings['steps']} SGD steps")
