"""FP acquisition geometry: grids, illumination windows and the pupil.

Conventions follow ``shared/docs/fp-conventions.md`` (the conventions of PtyLab's FPM mode):

- frames are ``M x M`` pixels of ``dx_lr = camera_pixel / magnification`` at the sample;
- the object is ``N x N`` with ``N = upsample * M`` and ``dx_hr = dx_lr / upsample``;
- the object spectrum is ``S = fftshift(fft2(o))`` with step ``dk = 1 / (M * dx_lr)`` and DC
  at index ``N // 2``;
- frame ``j`` sees the ``M x M`` window of ``S`` centred at
  ``(N//2 + round(s_y / (wavelength * dk)), N//2 + round(s_x / (wavelength * dk)))``;
- the coherent transfer function is ``1`` for ``|f| <= NA / wavelength``, centred on pixel
  ``M // 2`` of the window, times an optional complex aberration and a defocus phase
  ``exp(i 2 pi dz sqrt(1 / wavelength^2 - |f|^2))``.

Pairs of coordinates are always ordered ``(y, x)`` = (rows, columns), as PtyLab's ``encoder``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..validation import is_finite_real, is_whole

#: Physical ranges (SI units) every acquisition is checked against, so absurd optics (a unit
#: mistake, a corrupt file) fail early with the field named instead of giving garbage.
WAVELENGTH_RANGE = (10e-9, 10e-6)
#: The low-resolution pixel at the sample, ``camera_pixel / magnification``.
PIXEL_AT_SAMPLE_RANGE = (1e-9, 1e-3)
#: Largest ``|defocus|``, metres.
MAX_DEFOCUS = 1e-2

#: How each checked quantity is named when no other names are given.
DEFAULT_NAMES = {"pixel_at_sample": "pixel at the sample (camera_pixel / magnification)"}


class AcquisitionError(ValueError):
    """Raised when an acquisition is non-physical or inconsistent.

    Parameters
    ----------
    problem : str
        What is wrong (after the field's name).
    field : str, optional
        The quantity at fault (an :class:`Acquisition` field, ``pixel_at_sample``, ``led_pitch``).
    names : dict, optional
        ``field -> name`` to show (CLI flags, dataset names); see :meth:`named`.
    """

    def __init__(self, problem, field=None, names=None):
        self.problem, self.field = problem, field
        super().__init__(self.named(names or {}))

    def named(self, names: dict) -> str:
        """The message with the field called ``names[field]`` (e.g. ``--camera-pixel``)."""
        if self.field is None:
            return self.problem
        return f"{names.get(self.field) or DEFAULT_NAMES.get(self.field, self.field)} {self.problem}"


def _metres(value: float) -> str:
    """``1e-09`` -> ``1 nm``: a length for messages."""
    for unit, size in (("m", 1.0), ("mm", 1e-3), ("um", 1e-6), ("nm", 1e-9)):
        if abs(value) >= size:
            return f"{value / size:g} {unit}"
    return f"{value:g} m"


def check_optics(names=None, **values):
    """Check the physical range of each quantity given (None values are skipped).

    Parameters
    ----------
    names : dict, optional
        ``field -> name`` in messages (for example the CLI flags the values came from).
    **values
        Any of ``wavelength``, ``na``, ``magnification``, ``camera_pixel``, ``pixel_at_sample``,
        ``defocus``, ``led_distance``, ``led_pitch`` (metres; ``pixel_at_sample`` is computed from
        ``camera_pixel / magnification`` when both are given).

    Raises
    ------
    AcquisitionError
        Naming the first quantity out of range, and the range.
    """
    names = names or {}
    given = {k: v for k, v in values.items() if v is not None}

    def fail(field, problem):
        raise AcquisitionError(problem, field, names)

    for name in ("wavelength", "magnification", "camera_pixel", "pixel_at_sample", "led_distance", "led_pitch"):
        if name in given and not (is_finite_real(given[name]) and given[name] > 0):
            fail(name, f"must be a positive number, got {given[name]!r}")
    if "na" in given and not (is_finite_real(given["na"]) and 0 < given["na"] < 1):
        fail("na", f"must lie in (0, 1), got {given['na']!r}")
    if "defocus" in given:
        if not is_finite_real(given["defocus"]):
            fail("defocus", f"must be finite, got {given['defocus']!r}")
        if abs(given["defocus"]) > MAX_DEFOCUS:
            fail("defocus", f"must be at most {_metres(MAX_DEFOCUS)} in magnitude (metres), got {given['defocus']:g} m")
    if "wavelength" in given:
        low, high = WAVELENGTH_RANGE
        if not low <= given["wavelength"] <= high:
            fail("wavelength", f"must be between {_metres(low)} and {_metres(high)} (in metres: 532 nm is "
                 f"5.32e-07), got {given['wavelength']:g}")
    if "camera_pixel" in given and "magnification" in given and "pixel_at_sample" not in given:
        given["pixel_at_sample"] = given["camera_pixel"] / given["magnification"]
    if "pixel_at_sample" in given:
        low, high = PIXEL_AT_SAMPLE_RANGE
        if not low <= given["pixel_at_sample"] <= high:
            fail("pixel_at_sample", f"must be between {_metres(low)} and {_metres(high)}, got "
                 f"{given['pixel_at_sample']:g} m")


@dataclass(frozen=True)
class Acquisition:
    """Optics and illumination of one FP acquisition.

    Give either ``led_positions`` with ``led_distance``, or ``direction_sines``.

    Parameters
    ----------
    wavelength : float
        Illumination wavelength in metres.
    na : float
        Objective numerical aperture, ``0 < na < 1``.
    magnification : float
        Objective magnification.
    camera_pixel : float
        Camera pixel size in metres (object-plane pixel is ``camera_pixel / magnification``).
    frame_size : int
        ``M``: frames are ``M x M`` pixels.
    upsample : int
        ``N = upsample * M``: the object grid is ``N x N``.
    led_positions : (L, 2) float64, optional
        LED positions ``(y, x)`` in metres relative to the point under the sample centre.
    led_distance : float, optional
        LED-to-sample distance ``z`` in metres (needed with ``led_positions``).
    direction_sines : (L, 2) float64, optional
        Illumination direction sines ``(s_y, s_x)`` per frame; overrides the LED geometry
        (use it when a slide refracts the rays).
    pupil : (M, M) complex128, optional
        Complex aberration multiplied onto the circular pupil (fftshifted window layout, DC at
        ``M // 2``).
    defocus : float
        Defocus ``dz`` in metres (0: in focus).
    subpixel : bool
        Sub-pixel illumination: windows still start at the rounded shifts (:attr:`window_shifts`) and
        each frame's pupil is shifted by the remainder (:attr:`window_remainders`;
        ``pupil_function(shift=...)``, see :mod:`ptycho_app.calibration.subpixel`). False: the
        rounded windows alone (the default: see docs and ``benchmarks/subpixel.py``).
    """

    wavelength: float
    na: float
    magnification: float
    camera_pixel: float
    frame_size: int
    upsample: int = 2
    led_positions: np.ndarray | None = field(default=None, repr=False)
    led_distance: float | None = None
    direction_sines: np.ndarray | None = field(default=None, repr=False)
    pupil: np.ndarray | None = field(default=None, repr=False)
    defocus: float = 0.0
    subpixel: bool = False

    def __post_init__(self):
        check_optics(wavelength=self.wavelength, na=self.na, magnification=self.magnification,
                     camera_pixel=self.camera_pixel, defocus=self.defocus)
        for name, low in (("frame_size", 2), ("upsample", 1)):
            value = getattr(self, name)
            if not is_whole(value) or value < low:
                raise AcquisitionError(f"must be an integer >= {low}, got {value!r}", name)
            object.__setattr__(self, name, int(value))
        sines = self._resolve_sines()
        object.__setattr__(self, "direction_sines", sines)
        if self.pupil is not None:
            pupil = np.asarray(self.pupil, dtype=np.complex128)
            if pupil.shape != (self.frame_size, self.frame_size):
                raise AcquisitionError(f"must have shape ({self.frame_size}, {self.frame_size}), got {pupil.shape}",
                                       "pupil")
            object.__setattr__(self, "pupil", pupil)
        self._check_windows_fit()

    def _resolve_sines(self) -> np.ndarray:
        if self.direction_sines is not None:
            sines = np.asarray(self.direction_sines, dtype=np.float64)
            if sines.ndim != 2 or sines.shape[1] != 2 or len(sines) == 0:
                raise AcquisitionError(f"must have shape (L, 2), got {sines.shape}", "direction_sines")
            if not np.all(np.isfinite(sines)) or np.any(np.hypot(sines[:, 0], sines[:, 1]) >= 1):
                raise AcquisitionError("must be finite with s_y^2 + s_x^2 < 1", "direction_sines")
            return sines
        if self.led_positions is None or self.led_distance is None:
            raise AcquisitionError("give either direction_sines, or led_positions and led_distance")
        positions = np.asarray(self.led_positions, dtype=np.float64)
        if positions.ndim != 2 or positions.shape[1] != 2 or len(positions) == 0:
            raise AcquisitionError(f"must have shape (L, 2), got {positions.shape}", "led_positions")
        if not np.all(np.isfinite(positions)):
            raise AcquisitionError("must be finite", "led_positions")
        check_optics(led_distance=self.led_distance)
        return direction_sines_from_leds(positions, self.led_distance)

    def _check_windows_fit(self):
        M, N = self.frame_size, self.grid_size
        with np.errstate(over="ignore", invalid="ignore"):
            shifts = self.direction_sines / (self.wavelength * self.frequency_step)
        if not np.all(np.isfinite(shifts)):
            raise AcquisitionError("the illumination windows' shifts are not finite: check the optics and the "
                                   "illumination geometry")
        top_left = self.window_centers - M // 2
        if np.any(top_left < 0) or np.any(top_left + M > N):
            worst = float(np.abs(self.window_centers - N // 2).max())
            raise AcquisitionError(
                f"illumination windows leave the {N}x{N} object spectrum (largest shift "
                f"{worst:.0f} px, half-size {N // 2} px): increase upsample"
            )

    # ---- derived grids -------------------------------------------------------------------
    @property
    def n_frames(self) -> int:
        """``L``, the number of frames."""
        return len(self.direction_sines)

    @property
    def grid_size(self) -> int:
        """``N = upsample * M``."""
        return int(self.upsample * self.frame_size)

    @property
    def pixel_size_lr(self) -> float:
        """Low-resolution pixel size at the sample, metres."""
        return self.camera_pixel / self.magnification

    @property
    def pixel_size_hr(self) -> float:
        """High-resolution object pixel size, metres."""
        return self.pixel_size_lr / self.upsample

    @property
    def frequency_step(self) -> float:
        """``dk = 1 / (M * dx_lr)`` in cycles per metre."""
        return 1.0 / (self.frame_size * self.pixel_size_lr)

    @property
    def window_shifts(self) -> np.ndarray:
        """(L, 2) int64: window-centre offsets ``(row, col)`` from the spectrum centre, pixels."""
        shifts = self.direction_sines / (self.wavelength * self.frequency_step)
        return np.round(shifts).astype(np.int64)

    @property
    def window_remainders(self) -> np.ndarray:
        """(L, 2) float64: exact minus rounded window shifts, pixels, in ``[-0.5, 0.5]``."""
        return self.direction_sines / (self.wavelength * self.frequency_step) - self.window_shifts

    @property
    def window_centers(self) -> np.ndarray:
        """(L, 2) int64: window centres ``(row, col)`` in the ``N x N`` spectrum."""
        return self.grid_size // 2 + self.window_shifts

    @property
    def bright_field(self) -> np.ndarray:
        """(L,) bool: frames whose illumination NA is below the objective NA."""
        return np.hypot(self.direction_sines[:, 0], self.direction_sines[:, 1]) < self.na

    def pupil_function(self, shift=None) -> np.ndarray:
        """The coherent transfer function on the window grid.

        Parameters
        ----------
        shift : (L, 2) float64, optional
            Per-frame shifts ``delta_l`` (pixels, ``(row, col)``): frame ``l`` gets ``P(k - delta_l)``,
            the disc and the defocus phase evaluated at the shifted frequencies (exact), the
            aberration array shifted bilinearly (see :mod:`ptycho_app.calibration.subpixel`).

        Returns
        -------
        (M, M) complex128, or (L, M, M) with ``shift``
            Circular pupil of radius ``NA / wavelength`` centred on pixel ``M // 2`` (plus ``shift``),
            times the aberration and the defocus phase.
        """
        M = self.frame_size
        f = (np.arange(M) - M // 2) * self.frequency_step
        fy, fx = np.meshgrid(f, f, indexing="ij")
        if shift is not None:
            shift = np.asarray(shift, dtype=np.float64) * self.frequency_step
            fy = fy - shift[:, 0, None, None]
            fx = fx - shift[:, 1, None, None]
        f2 = fy**2 + fx**2
        inside = f2 <= (self.na / self.wavelength) ** 2
        pupil = inside.astype(np.complex128)
        if self.defocus != 0.0:
            kz = np.sqrt(np.maximum(1.0 / self.wavelength**2 - f2, 0.0))
            pupil = pupil * np.exp(2j * np.pi * self.defocus * kz)
        if self.pupil is not None:
            aberration = self.pupil
            if shift is not None:
                from ..calibration.subpixel import bilinear_shift

                aberration = bilinear_shift(aberration, shift / self.frequency_step).numpy()
            pupil = pupil * aberration
        return pupil


def direction_sines_from_leds(positions: np.ndarray, distance: float) -> np.ndarray:
    """Direction sines of LEDs at ``positions`` (y, x) a ``distance`` below the sample.

    Parameters
    ----------
    positions : (L, 2) float64
        LED positions ``(y, x)`` in metres.
    distance : float
        LED-to-sample distance in metres.

    Returns
    -------
    (L, 2) float64
        ``(s_y, s_x) = (y, x) / sqrt(x^2 + y^2 + z^2)``.
    """
    positions = np.asarray(positions, dtype=np.float64)
    radius = np.sqrt((positions**2).sum(axis=1, keepdims=True) + distance**2)
    return positions / radius


def led_grid(size: int, pitch: float) -> np.ndarray:
    """Positions of a square ``size x size`` LED grid centred on the optical axis.

    Parameters
    ----------
    size : int
        LEDs per side.
    pitch : float
        LED spacing in metres.

    Returns
    -------
    (size * size, 2) float64
        Positions ``(y, x)`` in metres, raster order (row by row).
    """
    offsets = (np.arange(size) - (size - 1) / 2) * pitch
    y, x = np.meshgrid(offsets, offsets, indexing="ij")
    return np.stack([y.ravel(), x.ravel()], axis=1)
