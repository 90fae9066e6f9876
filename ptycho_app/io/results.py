"""Result files: one per input and method, ``<stem>.<method>.h5``.

=====================  ====================  ====================================================
``object``             (N, N) complex64      recovered object (FP results only), global phase free
``spectrum``           (N, N) complex64      its fftshifted spectrum: sqrt(lambda_1) x top eigvec
``eigenvalues``        (r,) float64          eigenvalues of X, decreasing (physical units)
``singular_values``    (k,) float64          asymmetric sense results instead of ``eigenvalues``: singular
                                             values of X = U_1 diag(scale d) U_2^*, k = min(n1, n2, r)
``loss``               (T + 1,) float64      1/2 ||A(X_k) - b||^2 of X_0 ... X_T
``factors/U``          (n, r) complex64      factor in normalized units (enough to resume)
``factors/d``          (r,) float64          diagonal in normalized units (ones for BM)
``reference``          (N, N) complex64      band-limited ground truth (simulated inputs only)
``reference_matrix``   (n, n)                ground truth X (``sense`` results only; (n1, n2) asymmetric)
``calibration/...``    group, optional       the recovered calibration (FP results that recovered one)
``tiles/eigenvalues``  (K, r) float64        tiled results: eigenvalues of each tile's X (K tiles)
``tiles/corners``      (K, 2) int64          tiled results: each tile's top-left ``(row, col)``, camera pixels
``maps/lambda_ratio``  (rows, cols) float64  tiled results: lambda_2 / lambda_1 per tile on the tile grid
                                             (NaN at rank 1)
``maps/residual``      (rows, cols) float64  tiled results: each tile's relative residual (rank-r X)
=====================  ====================  ====================================================

Tiled results (``reconstruct --tile T --overlap V``, :mod:`ptycho_app.tiled`; attribute ``tiled`` true,
with ``tile``, ``overlap``, ``tile_rows``, ``tile_cols``): ``object`` is the stitched full field
(``Nf x Nf``, ``Nf = upsample x`` the frames' size) and ``reference`` the band-limited ground truth on
the same grid; ``spectrum`` is left out.  ``eigenvalues``, ``loss`` and ``factors/...`` are those of
the first tile (``tiles/corners[0]``), kept so every result has them; a tiled result cannot be
continued with ``--resume``.  Tile ``k`` sits at row ``k // tile_cols``, column ``k % tile_cols`` of
the maps.

The ``calibration`` group (:class:`~ptycho_app.calibration.Calibration`, layout in
:mod:`ptycho_app.calibration.model`; every dataset optional):

==============================  ==================  =============================================
``calibration/pupil``           (M, M) complex64    coherent transfer function (support times the
                                                    aberration), window layout, DC at ``M // 2``
``calibration/zernike``         (J,) float64        aberration phase, Noll order, radians
``calibration/brightness``      (L,) float64        per-frame brightness scalars
``calibration/direction_sines`` (L, 2) float64      refined illumination ``(s_y, s_x)`` per frame
==============================  ==================  =============================================

Its attributes: the LED-array fit (``led_shift_y``, ``led_shift_x`` in metres, ``led_rotation`` in
degrees, ``led_distance`` in metres) and what was recovered (``pupil_mode``, ``calibrate``, ...).

Asymmetric sensing results (``problem`` ``asymmetric``, methods ``uv`` and ``udv``) store ``W = [U_1; U_2]``
((n1 + n2, r)) as ``factors/U``, with attributes ``n1`` and ``n2``: ``X = U_1 diag(scale d) U_2^*``.

Attributes: ``method`` (``solver`` in files before 0.2), ``preset`` and every solver option (``rank``,
``loss``, ``precondition``, ``momentum``, ``init``, ``step``, UDU's ``step_d`` and ``radius``, ...),
``iterations``, ``seed``,
``app_version``, ``input_file``, ``input_sha256``, ``scale`` (``X = U diag(scale d) U^*``),
``seconds``, ``device``, ``precision``, ``interrupted``, ``relative_residual`` (of the rank-r ``X``),
``relative_residual_rank1`` (of the shown object's ``lambda_1 v v^*``, FP results), ``problem`` (``fp``,
``completion`` or ``sensing``), ``pixel_size`` (object pixel in metres, FP only) and ``options`` (JSON of the solver
options).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import __version__
from ..calibration.model import LED_MODEL_KEYS, Calibration
from .atomic import atomic_hdf5
from .errors import InputFileError, hdf5_errors
from .measurement import check_numbers, dataset_layout, has, open_hdf5, read_array, read_dataset

REQUIRED = ("eigenvalues", "loss", "factors/U", "factors/d")
#: Asymmetric results hold ``singular_values`` instead of ``eigenvalues``.
SPECTRA = ("eigenvalues", "singular_values")
OPTIONAL = ("object", "spectrum", "reference", "reference_matrix")
#: Datasets of tiled results: name -> (dataset, number of axes, dtype written).
TILED = {"tile_eigenvalues": ("tiles/eigenvalues", 2, np.float64), "tile_corners": ("tiles/corners", 2, np.int64),
         "lambda_ratio": ("maps/lambda_ratio", 2, np.float64), "residual_map": ("maps/residual", 2, np.float64)}
#: Datasets of the ``calibration`` group: name -> (number of axes, dtype written, number kind).
CALIBRATION_DATASETS = {"pupil": (2, np.complex64, "complex"), "zernike": (1, np.float64, "real"),
                        "brightness": (1, np.float64, "real"), "direction_sines": (2, np.float64, "real")}


@dataclass
class Result:
    """One solver's result for one input (see the module docstring for the file layout).

    Attributes
    ----------
    eigenvalues : (r,) float64 or None
        None for asymmetric results, which hold ``singular_values`` instead.
    loss : (T + 1,) float64
    U : (n, r) complex or real
        Normalized factor.
    d : (r,) float64
        Normalized diagonal.
    attrs : dict
        The file's attributes (method, preset, rank, loss, step, ..., input_sha256).
    object : (N, N) complex64 or None
    spectrum : (N, N) complex64 or None
    reference : (N, N) complex64 or None
    reference_matrix : (n, n) or (n1, n2) or None
    path : Path or None
    singular_values : (k,) float64 or None
        Asymmetric results: singular values of ``X = U_1 D U_2^*`` (``U`` is ``[U_1; U_2]``).
    calibration : Calibration or None
        The calibration recovered with the object (FP results; None when nothing was recovered).
    tile_eigenvalues : (K, r) float64 or None
        Tiled results: each tile's eigenvalues, decreasing.
    tile_corners : (K, 2) int64 or None
        Tiled results: each tile's top-left ``(row, col)`` in camera pixels.
    lambda_ratio : (rows, cols) float64 or None
        Tiled results: ``lambda_2 / lambda_1`` per tile (NaN at rank 1).
    residual_map : (rows, cols) float64 or None
        Tiled results: each tile's relative residual.
    """

    eigenvalues: np.ndarray
    loss: np.ndarray
    U: np.ndarray
    d: np.ndarray
    attrs: dict = field(default_factory=dict)
    object: np.ndarray | None = None
    spectrum: np.ndarray | None = None
    reference: np.ndarray | None = None
    reference_matrix: np.ndarray | None = None
    path: Path | None = None
    singular_values: np.ndarray | None = None
    calibration: Calibration | None = None
    tile_eigenvalues: np.ndarray | None = None
    tile_corners: np.ndarray | None = None
    lambda_ratio: np.ndarray | None = None
    residual_map: np.ndarray | None = None

    @property
    def tiled(self) -> bool:
        """A stitched result of ``reconstruct --tile`` (its object is the full field, not the factors' grid)."""
        return self.tile_corners is not None

    @property
    def spectral_values(self) -> np.ndarray:
        """The eigenvalues, or the singular values of an asymmetric result."""
        return self.eigenvalues if self.singular_values is None else self.singular_values

    @property
    def blocks(self) -> tuple | None:
        """``(n1, n2)`` of an asymmetric result (``X = U[:n1] diag(d) U[n1:]^*``), else None."""
        if self.singular_values is None:
            return None
        n1 = int(self.attrs.get("n1", 0))
        return n1, self.U.shape[0] - n1

    @property
    def method(self) -> str:
        """``bm`` or ``udu`` (files before version 0.2 call it ``solver``)."""
        return str(self.attrs.get("method", self.attrs.get("solver", "?")))

    @property
    def iterations(self) -> int:
        return int(self.attrs.get("iterations", len(self.loss) - 1))


def result_path(out_dir, input_path, method) -> Path:
    """``<out_dir>/<input stem>.<method>.h5``."""
    return Path(out_dir) / f"{Path(input_path).stem}.{method}.h5"


def write_result(path, result: Result):
    """Write a result file atomically (built in memory, written under a temporary name, then renamed)."""
    with atomic_hdf5(path) as f:
        for name in ("object", "spectrum", "reference"):
            value = getattr(result, name)
            if value is not None:
                f[name] = np.asarray(value, dtype=np.complex64)
        if result.reference_matrix is not None:
            f["reference_matrix"] = result.reference_matrix
        if result.singular_values is not None:
            f["singular_values"] = np.asarray(result.singular_values, dtype=np.float64)
        else:
            f["eigenvalues"] = np.asarray(result.eigenvalues, dtype=np.float64)
        f["loss"] = np.asarray(result.loss, dtype=np.float64)
        f["factors/U"] = np.asarray(result.U)
        f["factors/d"] = np.asarray(result.d, dtype=np.float64)
        attrs = {"app_version": __version__, **result.attrs}
        write_attributes(f, attrs)
        if result.calibration is not None and not result.calibration.is_empty():
            write_calibration(f, result.calibration)
        for name, (key, _, dtype) in TILED.items():
            value = getattr(result, name)
            if value is not None:
                f[key] = np.asarray(value, dtype=dtype)


def write_attributes(node, attrs: dict):
    """Attributes of an HDF5 file or group (None skipped; dicts, lists and tuples as JSON text)."""
    for key, value in attrs.items():
        if value is None:
            continue
        node.attrs[key] = json.dumps(value) if isinstance(value, (dict, list, tuple)) else value


def write_calibration(f, calibration: Calibration):
    """The ``calibration`` group of an open result file (layout: the module docstring)."""
    group = f.create_group("calibration")
    for name, (_, dtype, _) in CALIBRATION_DATASETS.items():
        value = getattr(calibration, name)
        if value is not None:
            group[name] = np.asarray(value, dtype=dtype)
    write_attributes(group, {**calibration.attrs, **calibration.led_model})


def read_calibration(f, path) -> Calibration | None:
    """The ``calibration`` group of an open result file, checked (None when the file has none).

    Raises
    ------
    InputFileError
        Naming the file and the dataset: ``calibration`` not a group, a dataset with the wrong number
        of axes or type, NaN/Inf, a non-square pupil, ``brightness`` and ``direction_sines`` of
        different lengths, direction sines with ``s_y^2 + s_x^2 >= 1``, a non-numeric LED-fit attribute.
    """
    if not has(f, path, "calibration"):
        return None
    with hdf5_errors(path, "calibration"):
        if hasattr(f["calibration"], "shape"):
            raise InputFileError(path, "expected a group (pupil, zernike, brightness, direction_sines), got a dataset",
                                 field="calibration")
    values = {}
    for name, (ndim, _, kind) in CALIBRATION_DATASETS.items():
        key = f"calibration/{name}"
        if has(f, path, key):
            values[name] = read_array(f, path, key, ndim, dtype_kind=kind).astype(
                np.complex128 if kind == "complex" else np.float64)
    check_calibration(path, **values)
    with hdf5_errors(path, "calibration"):
        attrs = read_attributes(f["calibration"], path)
    led_model = {}
    for key in LED_MODEL_KEYS:
        if key in attrs:
            value = attrs.pop(key)
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float)) or not np.isfinite(value):
                raise InputFileError(path, f"expected a finite number, got {value!r}", field=f"calibration/{key}")
            led_model[key] = float(value)
    return Calibration(**values, led_model=led_model, attrs=attrs)


def check_calibration(path, pupil=None, zernike=None, brightness=None, direction_sines=None):
    """Shapes of a calibration's datasets (their number of axes and finiteness are checked on reading)."""
    def fail(name, problem):
        raise InputFileError(path, problem, field=f"calibration/{name}")

    if pupil is not None and (pupil.shape[0] != pupil.shape[1] or pupil.shape[0] < 2):
        fail("pupil", f"expected a square (M, M) pupil with M >= 2, got shape {pupil.shape}")
    for name, value in (("zernike", zernike), ("brightness", brightness)):
        if value is not None and len(value) < 1:
            fail(name, "is empty: expected at least one value")
    if direction_sines is not None:
        if direction_sines.shape[1] != 2 or len(direction_sines) < 1:
            fail("direction_sines", f"expected shape (L, 2), got {direction_sines.shape}")
        if np.any(np.hypot(direction_sines[:, 0], direction_sines[:, 1]) >= 1):
            fail("direction_sines", "expected s_y^2 + s_x^2 < 1 for every frame")
    if brightness is not None and direction_sines is not None and len(brightness) != len(direction_sines):
        fail("brightness", f"has {len(brightness)} values but calibration/direction_sines has {len(direction_sines)} "
             "frames: expected one per frame")


def read_attributes(f, path) -> dict:
    """The file's root attributes as Python values (bytes decoded, NumPy scalars unwrapped)."""
    attrs = {}
    with hdf5_errors(path, "attributes"):
        for key, value in f.attrs.items():
            value = value.decode(errors="replace") if isinstance(value, bytes) else value
            attrs[key] = value.item() if isinstance(value, np.generic) else value
    return attrs


def check_memory(f, path, names):
    """Refuse a file whose datasets, by their declared shapes, would not fit in memory."""
    from ..resources import require_memory

    total = 0
    for name in names:
        shape, dtype = dataset_layout(f, path, name)
        total += int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    require_memory(2 * total, f"{path}: reading the result")


def read_tiled(f, path, name) -> np.ndarray:
    """One dataset of :data:`TILED`, checked (``maps/lambda_ratio`` may hold NaN: tiles solved at rank 1)."""
    key, ndim, dtype = TILED[name]
    if name == "lambda_ratio":
        value = read_dataset(f, path, key)
        check_numbers(value, path, key, ndim)
        if np.any(np.isinf(value)):
            raise InputFileError(path, "contains Inf values", field=key)
        return value.astype(dtype)
    return read_array(f, path, key, ndim).astype(dtype)


def check_tiled(path, tiled: dict, rank: int, optional: dict):
    """Shapes of a tiled result's datasets (:data:`TILED`) against each other; its images must be square."""
    eigenvalues, corners = tiled["tile_eigenvalues"], tiled["tile_corners"]
    if corners is None or corners.shape[1:] != (2,) or len(corners) < 1:
        raise InputFileError(path, "a tiled result needs tiles/corners of shape (K, 2)", field="tiles/corners")
    count = len(corners)
    if eigenvalues is not None and eigenvalues.shape != (count, rank):
        raise InputFileError(path, f"expected shape ({count}, {rank}) (one row per tile, like tiles/corners; one "
                             f"column per factor column), got {eigenvalues.shape}", field="tiles/eigenvalues")
    for name in ("lambda_ratio", "residual_map"):
        value = tiled[name]
        if value is not None and value.size != count:
            raise InputFileError(path, f"expected the tile grid of {count} tiles, got shape {value.shape}",
                                 field=TILED[name][0])
    for name in ("object", "reference"):
        image = optional[name]
        if image is not None and image.shape[0] != image.shape[1]:
            raise InputFileError(path, f"expected a square image, got shape {image.shape}", field=name)


def check_shapes(path, eigenvalues, loss, U, d, optional, blocks=None, tiled=False):
    """Check the datasets of a result against each other (a damaged or hand-edited file fails here).

    ``blocks``: ``(n1, n2)`` of an asymmetric result, whose ``eigenvalues`` argument holds its singular values.
    ``tiled``: a tiled result, whose object and reference are on the full field's grid (checked by
    :func:`check_tiled`), not on the factors'.
    """
    n, r = U.shape
    if n < 1 or r < 1:
        raise InputFileError(path, f"expected an (n, r) factor with n, r >= 1, got shape {U.shape}", field="factors/U")
    if blocks is not None:
        n1, n2 = blocks
        if n1 < 1 or n2 < 1:
            raise InputFileError(path, f"attribute n1 = {n1} does not split factors/U's {n} rows", field="n1")
        if eigenvalues.shape != (min(n1, n2, r),):
            raise InputFileError(path, f"expected {min(n1, n2, r)} values (min(n1, n2, r)), got shape "
                                 f"{eigenvalues.shape}", field="singular_values")
        matrix = optional["reference_matrix"]
        if matrix is not None and matrix.shape != (n1, n2):
            raise InputFileError(path, f"expected shape ({n1}, {n2}), got {matrix.shape}", field="reference_matrix")
        optional = {**optional, "reference_matrix": None}
    elif eigenvalues.shape != (min(n, r),):
        raise InputFileError(path, f"expected {min(n, r)} values (min(n, r) of factors/U's shape {U.shape}), "
                             f"got shape {eigenvalues.shape}", field="eigenvalues")
    if len(loss) < 1:
        raise InputFileError(path, "is empty: expected the loss of X_0 ... X_T (at least one value)", field="loss")
    if d.shape != (r,):
        raise InputFileError(path, f"factors/U has {r} columns but factors/d has shape {d.shape}", field="factors/d")
    for name in () if tiled else ("object", "spectrum", "reference"):
        image = optional[name]
        if image is not None and (image.shape[0] != image.shape[1] or image.size != n):
            side = int(round(np.sqrt(n)))
            raise InputFileError(path, f"expected a square image of n = {n} pixels ({side} x {side}, like "
                                 f"factors/U), got shape {image.shape}", field=name)
    matrix = optional["reference_matrix"]
    if matrix is not None and matrix.shape != (n, n):
        raise InputFileError(path, f"expected shape ({n}, {n}) like factors/U, got {matrix.shape}",
                             field="reference_matrix")


def read_result(path) -> Result:
    """Read and check a result file (read-only).

    Raises
    ------
    InputFileError
        For a missing, unreadable, damaged or incomplete file: a missing dataset, an empty
        ``eigenvalues`` or ``loss``, shapes that disagree with ``factors/U``.
    NotEnoughMemoryError
        Its datasets, by their declared shapes, would not fit in the available memory.
    """
    path = Path(path)
    with open_hdf5(path) as f:
        spectrum = "singular_values" if has(f, path, "singular_values") else "eigenvalues"
        for name in (spectrum, *REQUIRED[1:]):
            if not has(f, path, name):
                kind = "a measurement file" if has(f, path, "ptychogram") else "not a ptycho-app result"
                raise InputFileError(path, f"missing ({kind}: expected {', '.join(REQUIRED)})", field=name)
        present = [name for name in OPTIONAL if has(f, path, name)]
        calibration = [f"calibration/{name}" for name in CALIBRATION_DATASETS] if has(f, path, "calibration") else []
        calibration = [name for name in calibration if has(f, path, name)]
        tiled_present = [name for name, (key, _, _) in TILED.items() if has(f, path, key)]
        check_memory(f, path, [spectrum, *REQUIRED[1:], *present, *calibration,
                               *(TILED[name][0] for name in tiled_present)])
        eigenvalues = read_array(f, path, spectrum, 1)
        loss = read_array(f, path, "loss", 1)
        U = read_array(f, path, "factors/U", 2, dtype_kind="complex")
        d = read_array(f, path, "factors/d", 1)
        attrs = read_attributes(f, path)
        optional = {name: (read_array(f, path, name, 2, dtype_kind="complex") if name in present else None)
                    for name in OPTIONAL}
        calibration = read_calibration(f, path)
        tiled = {name: read_tiled(f, path, name) if name in tiled_present else None for name in TILED}
    is_tiled = any(value is not None for value in tiled.values())
    if is_tiled:
        check_tiled(path, tiled, U.shape[1], optional)
    blocks = None
    if spectrum == "singular_values":
        n1 = attrs.get("n1")
        if not isinstance(n1, (int, np.integer)):
            raise InputFileError(path, "an asymmetric result needs the integer attribute n1 (rows of U_1)", field="n1")
        blocks = (int(n1), U.shape[0] - int(n1))
    check_shapes(path, eigenvalues, loss, U, d, optional, blocks, tiled=is_tiled)
    values = {spectrum: eigenvalues.astype(np.float64)}
    return Result(**{"eigenvalues": None, **values}, loss=loss.astype(np.float64), U=U,
                  d=d.astype(np.float64), attrs=attrs, path=path, calibration=calibration, **optional, **tiled)
