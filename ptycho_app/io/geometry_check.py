"""Which flip or swap of the LED array fits the measured frames (no Qt, no solve).

A bright-field frame (illumination inside the objective's NA) is far brighter than a dark-field
one, so the frames' mean brightness shows which LEDs sat inside the NA. Each of the 8 flips and
swaps of the LED array about its centre (``y -> +-y``, ``x -> +-x``, optionally ``y <-> x``)
predicts a bright-field set (:attr:`Acquisition.bright_field` of the transformed array); the one
whose set the brightness separates best is the geometry to use.

What it can and cannot see: a flip about the optical axis keeps every ``|s|`` and so every
frame's bright-field status; flips about the array's centre change the set only when the array
is off the axis (by a fraction of a pitch or more, as real boards are). When several candidates
predict the same set the check says so: the brightness cannot tell them apart (and a short
solve's residual cannot either: the 180-degree turn of a centred array gives the twin image).

Score of a candidate: the probability that a frame it predicts bright-field is brighter than one
it predicts dark-field (the area under the ROC curve; 1 = perfect separation, 0.5 = chance),
then the number of frames whose predicted status disagrees with the measured one (the
brightness split by Otsu's threshold).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from ..physics.acquisition import Acquisition, direction_sines_from_leds

#: Below this best score no candidate is recommended (clean simulated data score about 0.99).
GOOD_SCORE = 0.95
#: The 8 candidates ``(swap, flip_y, flip_x)``: swap y/x first, then negate y and/or x.
CANDIDATES = tuple(itertools.product((False, True), repeat=3))


def candidate_flags(swap: bool, flip_y: bool, flip_x: bool) -> str:
    """The import flags that apply a candidate (``"no flag"`` for the geometry as given)."""
    flags = [flag for flag, on in (("--swap-xy", swap), ("--flip-y", flip_y), ("--flip-x", flip_x)) if on]
    return " ".join(flags) or "no flag"


def transform_points(points, swap=False, flip_y=False, flip_x=False) -> np.ndarray:
    """Points (L, 2) (y, x) swapped and/or flipped about their centroid.

    Parameters
    ----------
    points : (L, 2) float
        LED positions (or direction sines).
    swap, flip_y, flip_x : bool
        ``y <-> x`` first, then ``y -> -y`` and ``x -> -x``, all relative to the centroid.

    Returns
    -------
    (L, 2) float64
    """
    points = np.asarray(points, dtype=np.float64)
    centre = points.mean(axis=0)
    offset = points - centre
    if swap:
        offset = offset[:, ::-1]
    offset = offset * np.array([-1.0 if flip_y else 1.0, -1.0 if flip_x else 1.0])
    return centre + offset


def predicted_bright_field(acquisition: Acquisition, swap=False, flip_y=False, flip_x=False) -> np.ndarray:
    """(L,) bool: the bright-field frames if the LED array were transformed (see :func:`transform_points`).

    Uses the LED positions when the acquisition has them (flips about the array's centre), else
    its direction sines (flips about their centroid).
    """
    if acquisition.led_positions is not None and acquisition.led_distance is not None:
        sines = direction_sines_from_leds(transform_points(acquisition.led_positions, swap, flip_y, flip_x),
                                          acquisition.led_distance)
    else:
        sines = transform_points(acquisition.direction_sines, swap, flip_y, flip_x)
    return np.hypot(sines[:, 0], sines[:, 1]) < acquisition.na  # as Acquisition.bright_field


def separation(brightness, bright) -> float:
    """P(a predicted bright-field frame is brighter than a predicted dark-field one); ties count 1/2."""
    on, off = brightness[bright], brightness[~bright]
    if not len(on) or not len(off):
        return 0.5
    greater = (on[:, None] > off[None, :]).mean()
    equal = (on[:, None] == off[None, :]).mean()
    return float(greater + 0.5 * equal)


def measured_bright(brightness) -> np.ndarray:
    """(L,) bool: frames brighter than Otsu's threshold on the mean brightness."""
    from skimage.filters import threshold_otsu

    brightness = np.asarray(brightness, dtype=np.float64)
    if np.ptp(brightness) == 0:
        return np.zeros(len(brightness), dtype=bool)
    return brightness > threshold_otsu(brightness)


@dataclass
class Candidate:
    """One flip/swap and how well its bright-field set fits the measured brightness."""

    swap: bool
    flip_y: bool
    flip_x: bool
    score: float
    disagreements: int
    n_bright: int
    bright: np.ndarray

    @property
    def flags(self) -> str:
        return candidate_flags(self.swap, self.flip_y, self.flip_x)


@dataclass
class GeometryCheck:
    """The 8 candidates, best first, and the verdict.

    Attributes
    ----------
    candidates : list of Candidate
        Sorted by score (descending), then disagreements.
    tied : list of Candidate
        Those predicting the best candidate's bright-field set (indistinguishable here).
    n_frames : int
    note : str
        What was left out of the brightness, if anything.
    """

    candidates: list
    tied: list
    n_frames: int
    note: str = ""

    @property
    def best(self) -> Candidate:
        return self.candidates[0]

    @property
    def as_given_fits(self) -> bool:
        return any(c.flags == "no flag" for c in self.tied)

    def recommendation(self) -> str:
        """One line: keep the geometry, pass a flag, or say that the brightness cannot tell."""
        best = self.best
        if len(self.tied) == len(self.candidates):
            return ("cannot tell: all 8 flips/swaps predict the same bright-field frames (the LED array is "
                    "centred on the axis); brightness does not decide the orientation")
        if best.score < GOOD_SCORE:
            return (f"no candidate fits well (best score {best.score:.3f} < {GOOD_SCORE}): check the exposures "
                    "(--exposure, --dark-field-exposure), the background, the LED pitch, distance, centre offset, "
                    "NA and frame order")
        if self.as_given_fits:
            others = [c.flags for c in self.tied if c.flags != "no flag"]
            same = f" (as do {', '.join(others)}: indistinguishable here)" if others else ""
            return f"the geometry as given fits (score {best.score:.3f}){same}: no flag needed"
        alternatives = [c.flags for c in self.tied[1:]]
        also = f" (or, indistinguishable here: {'; '.join(alternatives)})" if alternatives else ""
        return f"pass {best.flags} (score {best.score:.3f}, as given scores {self.given.score:.3f}){also}"

    @property
    def given(self) -> Candidate:
        return next(c for c in self.candidates if c.flags == "no flag")

    def report(self) -> str:
        """A table of the candidates and the recommendation (several lines)."""
        lines = [f"  geometry check ({self.n_frames} frames; score = P(predicted bright-field frame is brighter "
                 "than a predicted dark-field one)):"]
        for c in self.candidates:
            lines.append(f"    {c.flags:<28s} score {c.score:.3f}, {c.disagreements:3d} frame(s) disagree, "
                         f"{c.n_bright} bright-field")
        if self.note:
            lines.append(f"  note: {self.note}")
        lines.append(f"  geometry: {self.recommendation()}")
        return "\n".join(lines)


def exposure_rule(exposure, bright_field):
    """``(bright, dark)`` when the exposures are one value on the bright-field frames and another on
    the dark-field ones (``--dark-field-exposure``: they depend on the geometry), else None."""
    if exposure is None or bright_field.all() or not bright_field.any():
        return None
    on, off = np.unique(exposure[bright_field]), np.unique(exposure[~bright_field])
    return (float(on[0]), float(off[0])) if len(on) == 1 and len(off) == 1 and on[0] != off[0] else None


def dark_level(frames) -> float:
    """The camera's dark level without any geometry: the 5th percentile of the frames' corner medians."""
    from .images import corner_background

    frames = np.asarray(frames)
    return float(np.percentile(corner_background(frames, np.zeros(len(frames), dtype=bool)), 5))


def check_geometry(acquisition: Acquisition, frames, exposure=None, background=None,
                   exposure_follows_geometry=None) -> GeometryCheck:
    """Score the 8 flips/swaps of the illumination against the frames' mean brightness.

    Nothing that depends on the geometry as given enters the brightness (it would favour that
    geometry): a background of one level per frame (``--background corners`` gives bright-field
    frames the dark-field level) is replaced by one dark level for all (:func:`dark_level`), and
    exposures that are one value on the given bright-field frames and another on the dark-field
    ones (``--dark-field-exposure``) are left out (an ``--exposure-table`` is used).

    Parameters
    ----------
    acquisition : Acquisition
        The geometry as given.
    frames : (L, M, M) real
        The frames as measured (or intensities already corrected, with no ``exposure`` or
        ``background`` given).
    exposure : (L,) float, optional
        Exposures stored with the frames.
    background : (M, M) or (L,) float, optional
        The stored background: a dark frame is subtracted as is, per-frame levels are replaced.
    exposure_follows_geometry : bool, optional
        Whether the exposures were set from the given bright-field set (``--dark-field-exposure``;
        stored as the ``exposure`` dataset's attribute ``follows_geometry``). None: assumed when
        they are one value on the bright-field frames and another on the dark-field frames.

    Returns
    -------
    GeometryCheck
    """
    frames = np.asarray(frames, dtype=np.float64)
    if len(frames) != acquisition.n_frames:
        raise ValueError(f"{len(frames)} frames, the acquisition has {acquisition.n_frames}")
    means = frames.reshape(len(frames), -1).mean(axis=1)
    if background is not None:
        background = np.asarray(background, dtype=np.float64)
        means = means - (background.mean() if background.ndim == 2 else dark_level(frames))
    note = ""
    if exposure_follows_geometry is None:
        exposure_follows_geometry = exposure_rule(None if exposure is None else np.asarray(exposure),
                                                  acquisition.bright_field) is not None
    if exposure is not None and exposure_follows_geometry:
        note = ("exposures split by the given bright-field set (--dark-field-exposure) left out: they would favour "
                "the geometry as given; pass --exposure-table for per-frame exposures the check can use")
    elif exposure is not None:
        means = means / np.asarray(exposure, dtype=np.float64)
    brightness = means
    candidates = []
    for swap, flip_y, flip_x in CANDIDATES:
        bright = predicted_bright_field(acquisition, swap, flip_y, flip_x)
        candidates.append(Candidate(swap, flip_y, flip_x, separation(brightness, bright),
                                    int((bright != measured_bright(brightness)).sum()), int(bright.sum()), bright))
    candidates.sort(key=lambda c: (-c.score, c.disagreements))
    tied = [c for c in candidates if np.array_equal(c.bright, candidates[0].bright)]
    return GeometryCheck(candidates, tied, len(frames), note)
