"""Stitch separately reconstructed tiles of a field of view into one object.

A full field of view is cut into square tiles of ``T x T`` pixels on the high-resolution object grid,
placed at integer corners ``(row, col)`` and overlapping their neighbours. Each tile is reconstructed on
its own, so each carries an arbitrary global phase (``x`` and ``x e^{i phi}`` give the same lifted
``X = x x^*``) and possibly a slightly different amplitude scale. Stitching therefore

1. aligns the tiles to each other through their overlaps (:func:`align_phases`, optionally
   :func:`align_scales`): a synchronization over the graph of overlapping tiles, one component at a time;
2. blends them with separable raised-cosine weights (:func:`feather_weights`):
   ``object = sum_k w_k f_k t_k / sum_k w_k``.

Only NumPy; the tiles are NumPy arrays.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "align_phases",
    "align_scales",
    "coverage",
    "feather_weights",
    "overlap_pairs",
    "stitch",
]


# ----------------------------------------------------------------------------------------------
# validation


def _check_overlap(tile: int, overlap: int) -> tuple[int, int]:
    """``(tile, overlap)`` as ints, or ValueError unless ``tile >= 1`` and ``0 <= overlap < tile``."""
    if int(tile) != tile or tile < 1:
        raise ValueError(f"tile size must be a positive integer, got {tile!r}")
    if int(overlap) != overlap or overlap < 0:
        raise ValueError(f"overlap must be a non-negative integer, got {overlap!r}")
    if overlap >= tile:
        raise ValueError(f"overlap ({overlap}) must be smaller than the tile size ({tile})")
    return int(tile), int(overlap)


def _check_tiles(tiles) -> np.ndarray:
    """The tiles as one ``(K, T, T)`` complex array, or ValueError (sizes differ, not square, empty)."""
    if isinstance(tiles, np.ndarray):
        arrays = list(tiles) if tiles.ndim == 3 else None
        if arrays is None:
            raise ValueError(f"tiles must be a (K, T, T) array, got shape {tiles.shape}")
    else:
        arrays = [np.asarray(t) for t in tiles]
    if len(arrays) == 0:
        raise ValueError("no tiles given")
    shapes = {np.shape(t) for t in arrays}
    if len(shapes) != 1:
        raise ValueError(f"all tiles must have the same size, got shapes {sorted(shapes)}")
    (shape,) = shapes
    if len(shape) != 2 or shape[0] != shape[1] or shape[0] < 1:
        raise ValueError(f"tiles must be square T x T, got shape {shape}")
    return np.asarray(np.stack(arrays), dtype=complex)


def _check_corners(corners, count: int, tile: int, shape: Sequence[int] | None = None) -> np.ndarray:
    """The corners as a ``(K, 2)`` int array, or ValueError (wrong shape, not integers, outside ``shape``)."""
    raw = np.asarray(corners, dtype=float)
    if raw.shape != (count, 2):
        raise ValueError(f"corners must have shape ({count}, 2) (one (row, col) per tile), got {raw.shape}")
    if not np.all(np.isfinite(raw)) or not np.array_equal(raw, np.round(raw)):
        raise ValueError("corners must be integer pixel positions on the high-resolution grid")
    out = raw.astype(int)
    if shape is not None:
        height, width = shape
        low = np.any(out < 0, axis=1)
        high = (out[:, 0] + tile > height) | (out[:, 1] + tile > width)
        bad = np.flatnonzero(low | high)
        if bad.size:
            k = int(bad[0])
            raise ValueError(
                f"tile {k} at corner {tuple(out[k])} (size {tile}) lies outside the object shape "
                f"{(height, width)}; {bad.size} tile(s) out of bounds"
            )
    return out


def _check_shape(shape) -> tuple[int, int]:
    """``(H, W)`` as positive ints, or ValueError."""
    shape = tuple(shape)
    if len(shape) != 2 or any(int(n) != n or n < 1 for n in shape):
        raise ValueError(f"shape must be two positive integers (H, W), got {shape!r}")
    return int(shape[0]), int(shape[1])


# ----------------------------------------------------------------------------------------------
# weights and geometry


def _ramp(tile: int, overlap: int) -> np.ndarray:
    """One axis of the feather weights: ``sin^2(pi (d + 1/2) / (2 V))`` for ``d < V``, else 1.

    Parameters
    ----------
    tile, overlap : int
        ``T`` and ``V``.

    Returns
    -------
    (T,) float
        ``d = min(i, T - 1 - i)`` is the distance of pixel ``i`` to the nearer edge.
    """
    d = np.minimum(np.arange(tile), tile - 1 - np.arange(tile))
    if overlap == 0:
        return np.ones(tile)
    return np.where(d < overlap, np.sin(np.pi * (d + 0.5) / (2 * overlap)) ** 2, 1.0)


def feather_weights(tile: int, overlap: int) -> np.ndarray:
    """Separable raised-cosine blending weights of one tile.

    Along each axis the weight is ``r(i) = sin^2(pi (d_i + 1/2) / (2 V))`` for pixels ``d_i < V`` from
    the nearer edge and 1 further in; the tile's weight is ``r(i) r(j)``. It is positive everywhere
    (``>= sin^2(pi / (4 V))^2`` at a corner), so a pixel covered by one tile keeps its value, and two
    tiles overlapping by exactly ``V`` pixels have weights summing to 1 across the overlap
    (``sin^2 + cos^2``): a partition of unity on a regular grid of step ``T - V``.

    Parameters
    ----------
    tile : int
        Tile size ``T``.
    overlap : int
        Ramp width ``V``, ``0 <= V < T``; ``V = 0`` gives all ones.

    Returns
    -------
    (T, T) float
        ``w[row, col]``.
    """
    tile, overlap = _check_overlap(tile, overlap)
    r = _ramp(tile, overlap)
    return np.outer(r, r)


def coverage(corners, tile: int, shape) -> np.ndarray:
    """How many tiles cover each pixel of the object; ``> 1`` marks the overlaps (seams), 0 the gaps.

    Parameters
    ----------
    corners : (K, 2) int
        ``(row, col)`` of each tile's first pixel.
    tile : int
        Tile size ``T``.
    shape : (2,) int
        Object shape ``(H, W)``.

    Returns
    -------
    (H, W) int
    """
    shape = _check_shape(shape)
    corners = np.asarray(corners)
    corners = _check_corners(corners, len(corners), int(tile), shape)
    count = np.zeros(shape, dtype=int)
    for r, c in corners:
        count[r : r + tile, c : c + tile] += 1
    return count


def overlap_pairs(corners, tile: int) -> list[tuple[int, int, tuple[slice, slice], tuple[slice, slice]]]:
    """The pairs of tiles that share pixels, with the shared window in each tile's own coordinates.

    Parameters
    ----------
    corners : (K, 2) int
        ``(row, col)`` of each tile's first pixel.
    tile : int
        Tile size ``T``.

    Returns
    -------
    list of (j, k, window_j, window_k)
        ``j < k``; ``tiles[j][window_j]`` and ``tiles[k][window_k]`` are the same object pixels.
    """
    corners = np.asarray(corners, dtype=int)
    lo = np.maximum(corners[:, None, :], corners[None, :, :])  # (K, K, 2)
    hi = np.minimum(corners[:, None, :], corners[None, :, :]) + tile
    shares = np.triu(np.all(hi > lo, axis=-1), k=1)
    pairs = []
    for j, k in zip(*np.nonzero(shares), strict=True):
        j, k = int(j), int(k)
        window_j = (slice(lo[j, k, 0] - corners[j, 0], hi[j, k, 0] - corners[j, 0]),
                    slice(lo[j, k, 1] - corners[j, 1], hi[j, k, 1] - corners[j, 1]))
        window_k = (slice(lo[j, k, 0] - corners[k, 0], hi[j, k, 0] - corners[k, 0]),
                    slice(lo[j, k, 1] - corners[k, 1], hi[j, k, 1] - corners[k, 1]))
        pairs.append((j, k, window_j, window_k))
    return pairs


def _components(adjacency: np.ndarray) -> list[np.ndarray]:
    """Connected components of a symmetric ``(K, K)`` bool adjacency, each sorted, in order of first tile."""
    count = adjacency.shape[0]
    label = np.full(count, -1)
    groups = []
    for start in range(count):
        if label[start] >= 0:
            continue
        label[start] = len(groups)
        stack, members = [start], [start]
        while stack:
            node = stack.pop()
            for other in np.flatnonzero(adjacency[node] & (label < 0)):
                label[other] = len(groups)
                stack.append(other)
                members.append(other)
        groups.append(np.sort(np.asarray(members)))
    return groups


# ----------------------------------------------------------------------------------------------
# alignment


def _pair_statistics(tiles: np.ndarray, corners: np.ndarray, overlap: int):
    """Weighted cross products and energies on every overlap.

    Returns
    -------
    cross : (K, K) complex
        ``C[j, k] = sum_p w_j w_k conj(t_j) t_k`` over the shared pixels; Hermitian, zero diagonal.
    energy : (K, K) float
        ``E[j, k] = sum_p w_j w_k |t_j|^2`` over the pixels ``j`` shares with ``k``.
    """
    count, tile = tiles.shape[0], tiles.shape[1]
    weights = feather_weights(tile, overlap)
    cross = np.zeros((count, count), dtype=complex)
    energy = np.zeros((count, count))
    for j, k, window_j, window_k in overlap_pairs(corners, tile):
        w = weights[window_j] * weights[window_k]
        a, b = tiles[j][window_j], tiles[k][window_k]
        cross[j, k] = np.sum(w * np.conj(a) * b)
        cross[k, j] = np.conj(cross[j, k])
        energy[j, k] = np.sum(w * np.abs(a) ** 2)
        energy[k, j] = np.sum(w * np.abs(b) ** 2)
    return cross, energy


def _leading_phases(cross: np.ndarray) -> np.ndarray:
    """Unit-modulus leading eigenvector of one connected component's degree-normalized ``cross``.

    The eigenvector is taken of ``D^{-1/2} C D^{-1/2}`` with ``D = diag(sum_k |C_jk|)``: with consistent
    tiles its modulus is ``D^{1/2} 1``, spread over all tiles, whereas that of ``C`` itself can
    concentrate on the most strongly overlapping tiles and leave the others at round-off level (seen
    on a 21 x 21 grid whose last row and column overlap more). The first entry is rotated to 1.

    Parameters
    ----------
    cross : (n, n) complex
        Hermitian, zero diagonal, connected (every row has a non-zero entry when ``n > 1``).

    Returns
    -------
    (n,) complex
    """
    if cross.shape[0] == 1:
        return np.ones(1, dtype=complex)
    scale = 1.0 / np.sqrt(np.sum(np.abs(cross), axis=1))
    _, vectors = np.linalg.eigh(scale[:, None] * cross * scale[None, :])
    v = vectors[:, -1]
    size = np.abs(v)
    phases = np.where(size > 0, v / np.where(size > 0, size, 1.0), 1.0)
    return phases * np.conj(phases[0])


def align_phases(tiles, corners, overlap: int) -> np.ndarray:
    """Global phase factor of each tile that best agrees with its neighbours on the overlaps.

    The factors ``f_k`` (``|f_k| = 1``) maximise ``sum_{j != k} conj(f_j) C_jk f_k``, i.e. minimise
    ``sum_{j<k} sum_p w_j w_k |f_j t_j - f_k t_k|^2`` over the overlaps, in its spectral relaxation:
    the leading eigenvector of the Hermitian ``C_jk = sum_p w_j w_k conj(t_j) t_k`` (feather weights
    ``w``), normalized by the degrees ``D_jj = sum_k |C_jk|`` (``D^{-1/2} C D^{-1/2}``) and projected
    onto unit modulus. This is exact when the tiles agree up to their phases. The
    graph of tiles (edges: overlaps with ``C_jk != 0``) is split into connected components; each is
    aligned on its own with its first tile's factor fixed to 1, so a tile without neighbours gets 1.

    Parameters
    ----------
    tiles : (K, T, T) complex
        The reconstructed tiles on the high-resolution grid.
    corners : (K, 2) int
        ``(row, col)`` of each tile's first pixel.
    overlap : int
        Feather ramp width ``V`` (``0 <= V < T``) weighting the overlap pixels.

    Returns
    -------
    (K,) complex
        Unit factors; ``factors[k] * tiles[k]`` are mutually aligned, ``factors[0] == 1``.
    """
    tiles = _check_tiles(tiles)
    tile, overlap = _check_overlap(tiles.shape[1], overlap)
    corners = _check_corners(corners, tiles.shape[0], tile)
    cross, _ = _pair_statistics(tiles, corners, overlap)
    factors = np.ones(tiles.shape[0], dtype=complex)
    for members in _components(np.abs(cross) > 0):
        factors[members] = _leading_phases(cross[np.ix_(members, members)])
    return factors


def _log_scales(members: np.ndarray, energy: np.ndarray) -> np.ndarray:
    """Least-squares ``g = log s`` of one component, ``g[0] = 0``: ``g_j - g_k = log(|t_k| / |t_j|)``."""
    if members.size == 1:
        return np.zeros(1)
    sub = energy[np.ix_(members, members)]
    rows, targets = [], []
    for a in range(members.size):
        for b in range(a + 1, members.size):
            if sub[a, b] > 0 and sub[b, a] > 0:
                row = np.zeros(members.size)
                row[a], row[b] = 1.0, -1.0
                rows.append(row)
                targets.append(0.5 * np.log(sub[b, a] / sub[a, b]))
    g, *_ = np.linalg.lstsq(np.asarray(rows)[:, 1:], np.asarray(targets), rcond=None)
    return np.concatenate([[0.0], g])


def align_scales(tiles, corners, overlap: int) -> np.ndarray:
    """Positive amplitude scale of each tile that best agrees with its neighbours on the overlaps.

    With the weighted overlap energies ``E_jk = sum_p w_j w_k |t_j|^2`` of tile ``j`` on its overlap
    with ``k``, the log-scales ``g = log s`` solve the least-squares problem
    ``g_j - g_k = (1/2) log(E_kj / E_jk)`` over all overlapping pairs (a graph Laplacian system), with
    the first tile of each connected component fixed to ``s = 1``. Exact when the tiles agree up to
    their scales (and phases).

    Parameters
    ----------
    tiles : (K, T, T) complex
        The reconstructed tiles on the high-resolution grid.
    corners : (K, 2) int
        ``(row, col)`` of each tile's first pixel.
    overlap : int
        Feather ramp width ``V`` (``0 <= V < T``) weighting the overlap pixels.

    Returns
    -------
    (K,) float
        Positive scales; ``scales[k] * |tiles[k]|`` agree on the overlaps.
    """
    tiles = _check_tiles(tiles)
    tile, overlap = _check_overlap(tiles.shape[1], overlap)
    corners = _check_corners(corners, tiles.shape[0], tile)
    _, energy = _pair_statistics(tiles, corners, overlap)
    scales = np.ones(tiles.shape[0])
    for members in _components((energy > 0) & (energy.T > 0)):
        scales[members] = np.exp(_log_scales(members, energy))
    return scales


# ----------------------------------------------------------------------------------------------
# blending


def stitch(tiles, corners, shape, overlap: int, align: bool = True, scale: bool = False) -> np.ndarray:
    """Blend tiles into one object: ``sum_k w_k f_k t_k / sum_k w_k``.

    Parameters
    ----------
    tiles : (K, T, T) complex
        The reconstructed tiles on the high-resolution grid.
    corners : (K, 2) int
        ``(row, col)`` of each tile's first pixel; every tile must lie inside ``shape``.
    shape : (2,) int
        Object shape ``(H, W)``.
    overlap : int
        Feather ramp width ``V``, ``0 <= V < T`` (normally the overlap the tiles were cut with).
    align : bool
        Multiply each tile by its :func:`align_phases` factor first (``f_k = 1`` otherwise).
    scale : bool
        Also multiply each tile by its :func:`align_scales` amplitude scale.

    Returns
    -------
    (H, W) complex
        The stitched object, up to one global phase (and scale) per connected group of tiles; pixels
        covered by no tile are 0 (see :func:`coverage`).
    """
    tiles = _check_tiles(tiles)
    shape = _check_shape(shape)
    tile, overlap = _check_overlap(tiles.shape[1], overlap)
    corners = _check_corners(corners, tiles.shape[0], tile, shape)
    factors = align_phases(tiles, corners, overlap) if align else np.ones(tiles.shape[0], dtype=complex)
    if scale:
        factors = factors * align_scales(tiles, corners, overlap)
    weights = feather_weights(tile, overlap)
    numerator = np.zeros(shape, dtype=complex)
    denominator = np.zeros(shape)
    for (r, c), f, t in zip(corners, factors, tiles, strict=True):
        numerator[r : r + tile, c : c + tile] += weights * f * t
        denominator[r : r + tile, c : c + tile] += weights
    covered = denominator > 0
    out = np.zeros(shape, dtype=complex)
    out[covered] = numerator[covered] / denominator[covered]
    return out
