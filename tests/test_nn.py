"""UDV / UV layers (ptycho_app.nn): projection, singular values from the factors, SVD pruning, the demo."""

import json

import pytest
import torch

from ptycho_app.cli import main
from ptycho_app.nn import UDVLinear, UVLinear


def udv(in_features=12, out_features=9, units=7, seed=0, **kwargs):
    return UDVLinear(in_features, out_features, units, generator=torch.Generator().manual_seed(seed),
                     dtype=torch.float64, **kwargs)


def uv(in_features=12, out_features=9, units=7, seed=0):
    return UVLinear(in_features, out_features, units, generator=torch.Generator().manual_seed(seed),
                    dtype=torch.float64)


def test_start_is_the_authors():
    layer = udv(xi=0.3, radius=2.0)
    assert torch.linalg.norm(layer.U).item() == pytest.approx(0.3)
    assert torch.linalg.norm(layer.V).item() == pytest.approx(0.3)
    assert torch.equal(layer.w.detach(), torch.ones(7, dtype=torch.float64))


def test_projection_keeps_factors_in_their_balls_and_w_nonnegative():
    layer = udv(radius=0.5)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        layer.U.copy_(3 * torch.randn(12, 7, generator=g, dtype=torch.float64))  # outside the ball
        layer.V.copy_(0.01 * torch.randn(9, 7, generator=g, dtype=torch.float64))  # inside
        layer.w.copy_(torch.randn(7, generator=g, dtype=torch.float64))
    U, V, w = layer.U.detach().clone(), layer.V.detach().clone(), layer.w.detach().clone()
    layer.project_()
    assert torch.linalg.norm(layer.U).item() == pytest.approx(0.5, rel=1e-12)  # scaled onto the sphere
    torch.testing.assert_close(layer.U.detach(), U * 0.5 / torch.linalg.norm(U))  # same direction
    torch.testing.assert_close(layer.V.detach(), V)  # inside: unchanged
    assert (layer.w >= 0).all()
    torch.testing.assert_close(layer.w.detach(), w.clamp(min=0))


@pytest.mark.parametrize("make", [udv, uv])
@pytest.mark.parametrize("sizes", [(12, 9, 7), (5, 9, 7), (12, 4, 30)])  # k < in, out; k > in; k > both
def test_singular_values_equal_those_of_the_dense_matrix(make, sizes):
    layer = make(*sizes)
    if isinstance(layer, UDVLinear):
        with torch.no_grad():
            layer.w.copy_(torch.rand(sizes[2], generator=torch.Generator().manual_seed(3), dtype=torch.float64))
    dense = torch.linalg.svdvals(layer.weight().detach())
    sigma = layer.singular_values()
    assert len(sigma) == min(sizes)
    torch.testing.assert_close(sigma, dense[: len(sigma)], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("make", [udv, uv])
def test_prune_to_the_numerical_rank_of_an_exactly_low_rank_layer(make):
    layer, r = make(units=7), 3
    with torch.no_grad():  # rank exactly 3: four units switched off
        (layer.w if isinstance(layer, UDVLinear) else layer.V)[..., r:] = 0
        layer.bias.copy_(torch.linspace(-1, 1, 9, dtype=torch.float64))
    assert layer.numerical_rank() == r
    pruned = layer.prune(1e-8 * layer.singular_values()[0])
    assert type(pruned) is type(layer) and pruned.units == r
    x = torch.randn(50, 12, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    torch.testing.assert_close(pruned(x), layer(x), rtol=0, atol=1e-5)
    if isinstance(pruned, UDVLinear):  # the pruned layer is feasible
        assert torch.linalg.norm(pruned.U) <= pruned.radius * (1 + 1e-12)
        assert torch.linalg.norm(pruned.V) <= pruned.radius * (1 + 1e-12)
        assert (pruned.w >= 0).all()


@pytest.mark.parametrize("make", [udv, uv])
def test_truncate_is_the_best_rank_k_approximation(make):
    layer = make()
    left, sigma, right_t = torch.linalg.svd(layer.weight().detach())
    best = (left[:, :2] * sigma[:2]) @ right_t[:2]  # Eckart-Young, from the dense SVD
    torch.testing.assert_close(layer.truncate(2).weight().detach(), best, rtol=0, atol=1e-12)


def test_udv_demo_command_writes_the_figure(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["udv-demo", "--out", str(out), "--steps", "20", "--units", "5", "--no-progress"]) == 0
    assert (out / "udv-demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = json.loads((out / "udv-demo.json").read_text())
    assert len(results["udv"]["pruned_errors"]) == len(results["uv"]["pruned_errors"]) == 5
    assert "units kept" in capsys.readouterr().out


def test_udv_demo_bad_steps_is_one_line(tmp_path, capsys):
    assert main(["udv-demo", "--out", str(tmp_path), "--steps", "0", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--steps" in err
