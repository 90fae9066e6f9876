"""Shared fixtures: small acquisitions and problems built from closed-form pieces."""

import os
import shutil
import signal
import subprocess
import sys
from functools import cache

import numpy as np
import pytest
import torch

from ptycho_app.simulation import default_acquisition, reference_object

# A test run started in the background of a non-interactive shell (``cmd &``, nohup) inherits SIGINT
# ignored, and so would every subprocess it starts: the Ctrl-C tests would then see no Ctrl-C at all.
# They test ptycho-app's answer to a terminal's Ctrl-C, so the run gets Python's own handler back.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

#: Fixtures that create a QApplication (pytest-qt, napari): tests using them need a display.
QT_FIXTURES = frozenset({"qapp", "qtbot", "make_napari_viewer", "make_napari_viewer_proxy"})
#: Creates a QApplication in a child process: Qt aborts (SIGABRT) the whole process when it cannot.
QT_PROBE = "from qtpy.QtWidgets import QApplication; QApplication([])"
NO_DISPLAY = ("no X server and no Xvfb: install xvfb and Qt's xcb libraries (as root: bash scripts/gui-deps.sh) "
              "to run the napari tests")


def display_skip_reason(environ=os.environ, which=shutil.which):
    """Why Qt cannot open a window here, from the environment alone (None: it may).

    pytest-xvfb starts Xvfb and sets ``DISPLAY`` before collection when Xvfb is installed; without
    Xvfb it silently runs without a display, and Qt then aborts the whole pytest process.
    """
    if environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY") or environ.get("QT_QPA_PLATFORM"):
        return None
    if which("Xvfb", path=environ.get("PATH")) is None:
        return NO_DISPLAY
    return "no X server: Xvfb is installed but was not started (pytest-xvfb disabled: -p no:xvfb or --no-xvfb)"


def qt_probe_error(environ=os.environ, timeout=60):
    """The last line Qt printed when a QApplication could not start in a child process (None: it started)."""
    try:
        probe = subprocess.run([sys.executable, "-c", QT_PROBE], env=dict(environ), capture_output=True,
                               text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"a QApplication did not start within {timeout} s"
    if probe.returncode == 0:
        return None
    lines = [line for line in probe.stderr.splitlines() if line.strip()]
    return lines[-1] if lines else f"exit status {probe.returncode}"


@cache
def gui_skip_reason():
    """Why the Qt (napari) tests are skipped here, or None when a QApplication can start."""
    reason = display_skip_reason()
    if reason is None and (error := qt_probe_error()) is not None:
        reason = (f"Qt cannot start ({error}): install Qt's xcb libraries (as root: bash scripts/gui-deps.sh) "
                  "to run the napari tests")
    return reason


def pytest_collection_modifyitems(config, items):
    """Skip tests that need a QApplication where none can start, instead of letting Qt abort the run."""
    gui_items = [item for item in items if QT_FIXTURES.intersection(getattr(item, "fixturenames", ()))]
    if gui_items and (reason := gui_skip_reason()) is not None:
        for item in gui_items:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def small_acquisition():
    """16x16 frames, 2x upsampling (32x32 object), 5x5 LEDs: fast and well overlapped."""
    return default_acquisition(frame_size=16, upsample=2, leds_per_side=5)


@pytest.fixture(scope="session")
def small_object(small_acquisition):
    return reference_object(small_acquisition.grid_size)


def random_factors(n, r, batch, dtype, seed=0):
    """Random ``U (B, n, r)`` and non-negative ``d (B, r)``."""
    generator = torch.Generator().manual_seed(seed)
    U = torch.randn(batch, n, r, dtype=dtype, generator=generator)
    real = torch.empty((), dtype=dtype).real.dtype
    d = torch.rand(batch, r, dtype=real, generator=generator) + 0.1
    return U, d


@pytest.fixture(scope="module")
def one_thread():
    """For modules of tiny problems: one intra-op thread is as fast alone and does not collapse when
    other processes load the cores (OpenMP's waiting threads then cost 10-50x)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
