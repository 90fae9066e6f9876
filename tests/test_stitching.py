"""Stitching of tiles: alignment of their global phases (and scales) and feathered blending."""

import numpy as np
import pytest

from ptycho_app.stitching import align_phases, align_scales, coverage, feather_weights, stitch

TILE, OVERLAP = 32, 8


def known_object(shape, seed=0):
    """A complex object with amplitude in [0.5, 1.5] and a smooth-ish phase, no zeros."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    phase = 2.0 * np.sin(rows / 7.0) * np.cos(cols / 11.0) + 0.3 * rng.standard_normal(shape)
    return (1.0 + 0.5 * rng.uniform(-1, 1, shape)) * np.exp(1j * phase)


def grid_corners(shape, tile=TILE, overlap=OVERLAP):
    """Corners of a regular grid of step ``tile - overlap``, the last row and column flush with the edge."""
    def axis(n):
        starts = list(range(0, n - tile + 1, tile - overlap))
        if starts[-1] != n - tile:
            starts.append(n - tile)
        return starts
    return np.array([(r, c) for r in axis(shape[0]) for c in axis(shape[1])])


def cut(obj, corners, tile=TILE):
    return np.stack([obj[r : r + tile, c : c + tile] for r, c in corners])


def random_phases(count, seed):
    return np.exp(2j * np.pi * np.random.default_rng(seed).uniform(size=count))


def phase_free_error(estimate, truth):
    """``min_phi ||estimate e^{i phi} - truth|| / ||truth||``."""
    inner = np.vdot(estimate, truth)
    return np.linalg.norm(estimate * np.exp(1j * np.angle(inner)) - truth) / np.linalg.norm(truth)


SHAPE = (80, 91)  # 3 x 4 tiles; the last column overlaps its neighbour by more than OVERLAP


def test_aligned_stitch_recovers_object_up_to_one_phase():
    """(a) Tiles with random global phases stitch back to the object up to one global phase."""
    obj = known_object(SHAPE)
    corners = grid_corners(SHAPE)
    phases = random_phases(len(corners), 1)
    tiles = cut(obj, corners) * phases[:, None, None]
    out = stitch(tiles, corners, SHAPE, OVERLAP)
    assert len(corners) == 12
    assert phase_free_error(out, obj) < 1e-12
    factors = align_phases(tiles, corners, OVERLAP)
    assert factors[0] == 1
    assert np.allclose(np.abs(factors), 1, atol=1e-15)
    assert np.allclose(factors * phases, phases[0], atol=1e-12)  # undoes each phase relative to tile 0


def test_large_uneven_grid_aligns_every_tile():
    """21 x 21 tiles whose last row and column overlap more: the plain leading eigenvector of C
    concentrates there (entries ~1e-23 elsewhere, phases lost); the degree-normalized one does not."""
    shape = (500, 500)
    obj = known_object(shape, seed=14)
    corners = grid_corners(shape)
    phases = random_phases(len(corners), 15)
    tiles = cut(obj, corners) * phases[:, None, None]
    assert len(corners) == 441
    assert np.allclose(align_phases(tiles, corners, OVERLAP) * phases, phases[0], atol=1e-12)
    assert phase_free_error(stitch(tiles, corners, shape, OVERLAP), obj) < 1e-12


def test_unaligned_stitch_fails():
    """(b) Without alignment the same tiles blend into a wrong object (relative error 1.24 here)."""
    obj = known_object(SHAPE)
    corners = grid_corners(SHAPE)
    tiles = cut(obj, corners) * random_phases(len(corners), 1)[:, None, None]
    error = phase_free_error(stitch(tiles, corners, SHAPE, OVERLAP, align=False), obj)
    print(f"unaligned relative error {error:.3f}")
    assert error > 0.3


def test_noisy_tiles_have_no_seams():
    """(c) With 1% complex noise the error in the overlaps is no larger than 1.2x that of the interiors."""
    obj = known_object(SHAPE, seed=2)
    corners = grid_corners(SHAPE)
    rng = np.random.default_rng(3)
    tiles = cut(obj, corners) * random_phases(len(corners), 4)[:, None, None]
    sigma = 0.01 * np.sqrt(np.mean(np.abs(obj) ** 2))
    tiles = tiles + sigma * (rng.standard_normal(tiles.shape) + 1j * rng.standard_normal(tiles.shape)) / np.sqrt(2)
    out = stitch(tiles, corners, SHAPE, OVERLAP)
    out = out * np.exp(1j * np.angle(np.vdot(out, obj)))
    count = coverage(corners, TILE, SHAPE)
    strips, interior = count > 1, count == 1
    rms = {name: np.sqrt(np.mean(np.abs(out - obj)[mask] ** 2)) / sigma
           for name, mask in (("overlap", strips), ("interior", interior))}
    print(f"rms error / sigma: overlap {rms['overlap']:.3f}, interior {rms['interior']:.3f}")
    assert strips.any() and interior.any()
    assert 0.9 < rms["interior"] < 1.1  # one tile: just its noise
    assert rms["overlap"] <= 1.2 * rms["interior"]


def test_single_tile_returns_itself():
    """(d) One tile, as large as the object: the object is the tile (to rounding), factor 1."""
    tile = known_object((TILE, TILE), seed=5) * np.exp(0.7j)
    out = stitch(tile[None], [(0, 0)], (TILE, TILE), OVERLAP)
    assert np.max(np.abs(out - tile)) < 1e-15
    assert align_phases(tile[None], [(0, 0)], OVERLAP)[0] == 1


def test_single_tile_inside_larger_object_leaves_zero_elsewhere():
    tile = known_object((TILE, TILE), seed=6)
    out = stitch(tile[None], [(5, 7)], (50, 60), OVERLAP)
    assert np.allclose(out[5 : 5 + TILE, 7 : 7 + TILE], tile, rtol=0, atol=1e-15)
    assert np.count_nonzero(out) == TILE * TILE


def test_feather_weights_closed_form():
    """(e) sin^2(pi (d + 1/2) / (2 V)) on the ramp, 1 inside; positive, separable, symmetric."""
    w = feather_weights(TILE, OVERLAP)
    r = np.sin(np.pi * np.array([0.5, 1.5, 7.5]) / 16) ** 2
    assert w.shape == (TILE, TILE)
    assert w[0, 0] == pytest.approx(r[0] ** 2, abs=1e-15)
    assert w[1, TILE - 1] == pytest.approx(r[1] * r[0], abs=1e-15)
    assert w[7, 16] == pytest.approx(r[2], abs=1e-15)
    assert w[8, 8] == 1 and w[16, 16] == 1
    assert np.all(w > 0) and w.min() == pytest.approx(np.sin(np.pi / 32) ** 4)
    ramp = w[16]
    assert np.allclose(w, np.outer(ramp, ramp), rtol=0, atol=1e-15)
    assert np.array_equal(w, w.T) and np.array_equal(w, w[::-1, ::-1])
    assert np.allclose(ramp[-OVERLAP:] + ramp[:OVERLAP], 1, atol=1e-15)  # partition of unity across an overlap
    assert np.array_equal(feather_weights(5, 0), np.ones((5, 5)))


def test_disconnected_layout_aligns_each_component():
    """(f) Two separate groups of tiles and one lone tile: each group is aligned on its own."""
    shape = (60, 170)
    obj = known_object(shape, seed=7)
    left = [(0, 0), (0, 24), (24, 0), (24, 24)]  # 2 x 2, rows and cols 0..55
    right = [(0, 70), (0, 94), (24, 94)]  # an L, cols 70..125
    lone = [(28, 138)]  # cols 138..169, apart from both
    corners = np.array(left + right + lone)
    phases = random_phases(len(corners), 8)
    tiles = cut(obj, corners) * phases[:, None, None]
    factors = align_phases(tiles, corners, OVERLAP)
    groups = [np.arange(4), np.arange(4, 7)]
    for g in groups:
        assert factors[g[0]] == 1
        assert np.allclose(factors[g] * phases[g], phases[g[0]], atol=1e-12)
    assert factors[-1] == 1
    out = stitch(tiles, corners, shape, OVERLAP)
    count = coverage(corners, TILE, shape)
    assert np.all(count[:, 56:70] == 0) and np.all(count[:, 126:138] == 0)
    covered = count > 0
    for cols in (slice(0, 56), slice(70, 126)):
        mask = covered[:, cols]
        assert phase_free_error(out[:, cols][mask], obj[:, cols][mask]) < 1e-12
    # the two groups keep their own (different) global phases
    mask = covered[:, :126]
    assert phase_free_error(out[:, :126][mask], obj[:, :126][mask]) > 0.1


def test_lone_tile_gets_factor_one():
    shape = (40, 120)
    obj = known_object(shape, seed=9)
    corners = np.array([(0, 0), (0, 24), (8, 80)])
    tiles = cut(obj, corners) * random_phases(3, 10)[:, None, None]
    factors = align_phases(tiles, corners, OVERLAP)
    assert factors[0] == 1 and factors[2] == 1


def test_scale_alignment():
    """Optional amplitude scales: with random scales and phases, scale=True recovers the object up to
    one complex factor; align_scales undoes the scales relative to tile 0."""
    obj = known_object(SHAPE, seed=11)
    corners = grid_corners(SHAPE)
    rng = np.random.default_rng(12)
    scales = rng.uniform(0.8, 1.25, len(corners))
    tiles = cut(obj, corners) * (scales * random_phases(len(corners), 13))[:, None, None]
    found = align_scales(tiles, corners, OVERLAP)
    assert np.allclose(found * scales, scales[0], rtol=1e-12)
    out = stitch(tiles, corners, SHAPE, OVERLAP, scale=True)
    coefficient = np.vdot(out, obj) / np.vdot(out, out)
    assert np.linalg.norm(coefficient * out - obj) / np.linalg.norm(obj) < 1e-12
    phase_only = stitch(tiles, corners, SHAPE, OVERLAP)
    coefficient = np.vdot(phase_only, obj) / np.vdot(phase_only, phase_only)
    assert np.linalg.norm(coefficient * phase_only - obj) / np.linalg.norm(obj) > 1e-3


@pytest.mark.parametrize(
    ("tiles", "corners", "shape", "overlap", "message"),
    [
        (np.zeros((2, 8, 8)), [(0, 0), (0, 10)], (8, 16), 2, "outside the object shape"),
        (np.zeros((1, 8, 8)), [(-1, 0)], (8, 16), 2, "outside the object shape"),
        ([np.zeros((8, 8)), np.zeros((9, 9))], [(0, 0), (0, 8)], (9, 17), 2, "same size"),
        (np.zeros((1, 8, 6)), [(0, 0)], (8, 8), 2, "square"),
        (np.zeros((1, 8, 8)), [(0, 0)], (8, 8), 8, "smaller than the tile size"),
        (np.zeros((1, 8, 8)), [(0, 0)], (8, 8), -1, "non-negative"),
        (np.zeros((2, 8, 8)), [(0, 0)], (8, 8), 2, "corners must have shape"),
        (np.zeros((1, 8, 8)), [(0.5, 0)], (8, 8), 2, "integer"),
        (np.zeros((0, 8, 8)), np.zeros((0, 2)), (8, 8), 2, "no tiles"),
        (np.zeros((8, 8)), [(0, 0)], (8, 8), 2, "(K, T, T)"),
    ],
)
def test_bad_input_raises(tiles, corners, shape, overlap, message):
    """(g) Clear ValueErrors for bad layouts."""
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        stitch(tiles, corners, shape, overlap)


def test_feather_weights_bad_overlap():
    with pytest.raises(ValueError, match="smaller than the tile size"):
        feather_weights(8, 8)
