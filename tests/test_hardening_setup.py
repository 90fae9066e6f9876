"""Set-up hardening (issue 10): the test command works on a machine without an X server, and
PtyLab files whose object grid follows the object or ``--upsample``."""

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
import yaml

from ptycho_app.cli import get_parser, main
from ptycho_app.io.measurement import read_measurement
from ptycho_app.io.results import read_result
from ptycho_app.physics import fp_intensities
from ptycho_app.simulation import reference_object
from tests.conftest import NO_DISPLAY, display_skip_reason, qt_probe_error

ROOT = Path(__file__).resolve().parents[1]
GUI_DEPS = ROOT / "scripts" / "gui-deps.sh"


# ---- item 14: GUI tests without an X server ----------------------------------------------------------------
def test_no_display_and_no_xvfb_gives_the_install_hint(tmp_path):
    assert display_skip_reason({"PATH": str(tmp_path)}) == NO_DISPLAY
    assert "install xvfb" in NO_DISPLAY and "napari tests" in NO_DISPLAY


def test_a_display_or_xvfb_lets_the_gui_tests_run(tmp_path):
    assert display_skip_reason({"PATH": str(tmp_path), "DISPLAY": ":0"}) is None
    assert display_skip_reason({"PATH": str(tmp_path), "QT_QPA_PLATFORM": "offscreen"}) is None
    xvfb = tmp_path / "Xvfb"
    xvfb.write_text("#!/bin/sh\n")
    xvfb.chmod(0o755)
    assert "Xvfb is installed but was not started" in display_skip_reason({"PATH": str(tmp_path)})


def test_qt_probe_reports_a_platform_that_cannot_start():
    environ = {**os.environ, "QT_QPA_PLATFORM": "no-such-platform"}
    error = qt_probe_error(environ)
    assert error is not None and "platform" in error.lower()
    assert qt_probe_error({**os.environ, "QT_QPA_PLATFORM": "offscreen"}) is None


def test_plugin_tests_skip_with_the_reason_when_there_is_no_xvfb(tmp_path):
    """The run the issue saw abort (rc 134, "Fatal Python error: Aborted"): no DISPLAY, no Xvfb on PATH."""
    environ = {**os.environ, "PATH": str(tmp_path), "DISPLAY": "", "OMP_NUM_THREADS": "1"}
    environ.pop("WAYLAND_DISPLAY", None), environ.pop("QT_QPA_PLATFORM", None)
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
                          "tests/test_plugin.py"], cwd=ROOT, env=environ, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "no X server and no Xvfb: install xvfb" in run.stdout and " skipped" in run.stdout
    assert "Aborted" not in run.stdout + run.stderr


def fake_bin(tmp_path, uid, apt_get):
    """A PATH with bash's helpers, a dpkg-query that knows no package, an ``id`` and maybe an apt-get."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for tool in ("bash", "grep", "cat"):
        (folder / tool).symlink_to(subprocess.run(["which", tool], capture_output=True, text=True).stdout.strip())
    scripts = {"dpkg-query": "exit 1", "id": f"echo {uid}"}
    if apt_get:
        scripts["apt-get"] = f"echo apt-get \"$@\" >> {tmp_path / 'apt.log'}"
    for name, body in scripts.items():
        (folder / name).write_text(f"#!{folder / 'bash'}\n{body}\n")
        (folder / name).chmod(0o755)
    return str(folder)


@pytest.mark.parametrize(("uid", "apt_get", "expected"), [(0, False, "no apt-get"), (1000, True, "not root")])
def test_gui_deps_without_usable_apt_says_the_tests_will_be_skipped(tmp_path, uid, apt_get, expected):
    path = fake_bin(tmp_path, uid, apt_get)
    for args, code in (([], 0), (["--required"], 1)):
        run = subprocess.run([f"{path}/bash", str(GUI_DEPS), *args], env={"PATH": path}, capture_output=True,
                             text=True)
        assert run.returncode == code
        assert expected in run.stderr and "the napari tests will be skipped" in run.stderr
        assert "xvfb" in run.stderr and "libxcb-cursor0" in run.stderr
    assert not (tmp_path / "apt.log").exists()


def test_gui_deps_installs_the_missing_packages_with_apt_as_root(tmp_path):
    path = fake_bin(tmp_path, 0, apt_get=True)
    run = subprocess.run([f"{path}/bash", str(GUI_DEPS)], env={"PATH": path}, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    calls = (tmp_path / "apt.log").read_text().splitlines()
    assert calls[0] == "apt-get update -qq"
    assert calls[1].startswith("apt-get install -y -qq xvfb libxcb-icccm4 libxcb-keysyms1")


def test_make_test_and_ci_share_the_one_install():
    assert "bash scripts/gui-deps.sh" in (ROOT / "Makefile").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "scripts/gui-deps.sh --required" in ci and "apt-get" not in ci


# ---- item 15: the object grid of a PtyLab file -------------------------------------------------------------
@pytest.fixture
def ptylab_file(tmp_path, small_acquisition, small_object):
    """A PtyLab FPM file (no ``upsample``, no extras): 25 frames of 16 x 16; the smallest upsample that fits is 2."""
    path = tmp_path / "ptylab.h5"
    with h5py.File(path, "w") as f:
        f["ptychogram"] = fp_intensities(small_object, small_acquisition).astype(np.float32)
        f["encoder"] = small_acquisition.led_positions
        f["wavelength"], f["dxd"], f["zled"], f["magnification"], f["NA"] = 532e-9, 6.5e-6, 80e-3, 4.0, 0.08
    return path


def write_object(path, size):
    obj = reference_object(size)
    np.save(path, obj)
    return obj


def test_simulate_takes_the_upsample_from_the_object_with_a_ptylab_geometry(tmp_path, ptylab_file, capsys):
    assert read_measurement(ptylab_file).acquisition.upsample == 2
    obj = write_object(tmp_path / "obj48.npy", 48)
    out = tmp_path / "sim.h5"
    assert main(["simulate", "--object", str(tmp_path / "obj48.npy"), "--geometry", str(ptylab_file),
                 "--out", str(out)]) == 0
    assert "object 48x48" in capsys.readouterr().out
    written = read_measurement(out)
    assert written.acquisition.upsample == 3 and written.frames.shape == (25, 16, 16)
    np.testing.assert_allclose(written.ground_truth, obj.astype(np.complex64))


def test_simulate_refuses_an_object_that_is_not_a_multiple_of_the_frames(tmp_path, ptylab_file, capsys):
    write_object(tmp_path / "obj50.npy", 50)

    code = main(["simulate", "--object", str(tmp_path / "obj50.npy"), "--geometry", str(ptylab_file),
                 "--out", str(tmp_path / "sim.h5")])
    err = capsys.readouterr().err
    assert code != 0 and len(err.strip().splitlines()) == 1
    assert "obj50.npy" in err and "multiple of the frame size 16" in err and "(50, 50)" in err
    assert not (tmp_path / "sim.h5").exists()


def test_simulate_honours_upsample_with_geometry(tmp_path, ptylab_file, capsys):
    assert main(["simulate", "--geometry", str(ptylab_file), "--upsample", "4", "--out", str(tmp_path / "a.h5")]) == 0
    assert read_measurement(tmp_path / "a.h5").acquisition.grid_size == 64
    # --upsample wins over the object: a 48 x 48 object does not fit upsample 4
    write_object(tmp_path / "obj48.npy", 48)
    code = main(["simulate", "--geometry", str(ptylab_file), "--upsample", "4", "--object",
                 str(tmp_path / "obj48.npy"), "--out", str(tmp_path / "b.h5")])
    assert code != 0 and "expected a (64, 64) object" in capsys.readouterr().err
    # too small for the illumination: one line naming the file and the upsample
    code = main(["simulate", "--geometry", str(ptylab_file), "--upsample", "1", "--out", str(tmp_path / "c.h5")])
    err = capsys.readouterr().err
    assert code != 0 and "ptylab.h5: with upsample 1: illumination windows leave" in err
    assert main(["simulate", "--upsample", "0", "--out", str(tmp_path / "d.h5")]) != 0
    assert "--upsample must be a positive integer, got 0" in capsys.readouterr().err


def test_simulate_without_geometry_takes_the_upsample_from_the_object(tmp_path):
    write_object(tmp_path / "obj48.npy", 48)
    assert main(["simulate", "--object", str(tmp_path / "obj48.npy"), "--frame-size", "16", "--leds", "5",
                 "--out", str(tmp_path / "a.h5")]) == 0
    assert read_measurement(tmp_path / "a.h5").acquisition.upsample == 3
    assert main(["simulate", "--frame-size", "16", "--leds", "5", "--out", str(tmp_path / "b.h5")]) == 0
    assert read_measurement(tmp_path / "b.h5").acquisition.upsample == 4  # DEFAULT_UPSAMPLE


def test_read_measurement_upsample_overrides_the_file_and_leaves_out_a_truth_of_another_size(tmp_path):
    path = tmp_path / "sim.h5"
    assert main(["simulate", "--frame-size", "16", "--upsample", "2", "--leds", "5", "--out", str(path)]) == 0
    m = read_measurement(path, upsample=3)
    assert m.acquisition.grid_size == 48 and m.ground_truth is None
    assert any("upsample 3 used instead of the file's 2" in note for note in m.notes)
    assert any("ground_truth (32, 32) left out" in note for note in m.notes)
    assert read_measurement(path, upsample=2).ground_truth.shape == (32, 32)


def test_reconstruct_upsample_chooses_the_object_grid_of_a_ptylab_file(tmp_path, ptylab_file, capsys):
    out = tmp_path / "r"
    assert main(["reconstruct", str(ptylab_file), "--method", "bm", "--upsample", "3", "--iters", "2",
                 "--no-progress", "--out", str(out)]) == 0
    assert read_result(out / "ptylab.bm.h5").object.shape == (48, 48)
    assert main(["reconstruct", str(ptylab_file), "--upsample", "0", "--out", str(tmp_path / "r0")]) != 0
    assert "--upsample must be a positive integer, got 0" in capsys.readouterr().err


# ---- item 17: docs and help texts --------------------------------------------------------------------------
def test_data_md_examples_write_only_into_the_ignored_out_folder():
    text = (ROOT / "docs" / "data.md").read_text()
    blocks = "".join(block.split("```")[0] for block in text.split("```bash")[1:]).replace("\\\n", " ")
    commands = [line for line in blocks.splitlines() if line.startswith("ptycho-app ")]
    assert len(commands) == 3
    for line in commands:
        targets = [word for word in line.split() if word.endswith((".h5", "blood")) and "$D" not in word]
        assert targets and all(word.startswith("out/") for word in targets), line
    assert "out/" in (ROOT / ".gitignore").read_text().splitlines()
    assert "| `import` | about" in text and "| `compare` | about" in text  # the run times


def test_import_writes_its_default_output_in_the_current_folder_as_help_says(tmp_path, monkeypatch, capsys):
    help_text = " ".join(get_parser()._subparsers._group_actions[0].choices["import"].format_help().split())
    assert "(default: <mat stem>.h5 in the current folder)" in help_text
    source = tmp_path / "data"
    source.mkdir()
    rng = np.random.default_rng(0)
    scipy.io.savemat(source / "stack.mat", {"imlow_HDR": rng.uniform(0.5, 2, (16, 16, 9)).astype(np.float32),
                                            "wlength": 500e-9, "kx": np.zeros((1, 9)), "ky": np.zeros((9, 1))})
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(["import", str(source / "stack.mat"), "--frame-type", "intensity", "--na", "0.1",
                 "--magnification", "4", "--pixel-size", "1e-6", "--kx-key", "kx", "--ky-key", "ky"]) == 0
    assert (work / "stack.h5").is_file() and not (source / "stack.h5").exists()


def test_readme_names_the_sample_as_napari_shows_it():
    manifest = yaml.safe_load((ROOT / "plugins" / "napari_ptycho" / "napari.yaml").read_text())
    sample = manifest["contributions"]["sample_data"][0]["display_name"]
    assert f"File > Open Sample > {sample} ({manifest['name']})" in (ROOT / "README.md").read_text()
