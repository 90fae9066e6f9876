"""Issue 10, items 10-13, 18, 19: physical ranges, collapse and bad solver options, JSON without
NaN, all-or-nothing compare, the shown object's residual, progress records without a bar."""

import json
import logging

import h5py
import numpy as np
import pytest
import torch

from ptycho_app.cli import main
from ptycho_app.io.errors import InputFileError
from ptycho_app.io.measurement import read_measurement
from ptycho_app.io.results import Result, read_result, write_result
from ptycho_app.lifting import LiftedFP
from ptycho_app.physics import Acquisition, AcquisitionError, fp_intensities, led_grid
from ptycho_app.report import compare_results, describe_result, result_metrics
from ptycho_app.session import run
from ptycho_app.solvers import SolverDivergedError, SolverOptions, iterate
from ptycho_app.solvers.factorized import solver_failure

SMALL = ["--frame-size", "16", "--upsample", "2", "--leds", "5"]


def simulate(folder, name="small.h5"):
    path = folder / name
    assert main(["simulate", "--out", str(path), *SMALL]) == 0
    return path


def one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.fixture(scope="module")
def measurement(tmp_path_factory):
    return simulate(tmp_path_factory.mktemp("measurement"))


@pytest.fixture(scope="module")
def solved(tmp_path_factory, measurement):
    """The measurement reconstructed with BM and UDU (fast preset, 60 iterations)."""
    out = tmp_path_factory.mktemp("solved")
    assert main(["reconstruct", str(measurement), "--iters", "60", "--out", str(out), "--no-progress"]) == 0
    return out


@pytest.fixture
def fp_problem(measurement):
    m = read_measurement(measurement)
    operator = LiftedFP(m.acquisition, device=torch.device("cpu"), dtype=torch.complex128)
    return operator, torch.as_tensor(m.intensities())[None].to(torch.float64)


# ---- 10: physical ranges of the optics -------------------------------------------------------------
@pytest.mark.parametrize("flags, named, expected", [
    (["--camera-pixel", "1e-300"], "--camera-pixel / --magnification", "between 1 nm and 1 mm"),
    (["--magnification", "1e300"], "--camera-pixel / --magnification", "between 1 nm and 1 mm"),
    (["--defocus", "1e300"], "--defocus", "at most 10 mm"),
    (["--wavelength", "532"], "--wavelength", "between 10 nm and 10 um"),
    (["--na", "0"], "--na", "must lie in (0, 1)"),
    (["--pitch", "inf"], "--pitch", "positive number"),
    (["--distance", "inf"], "--distance", "positive number"),
])
def test_absurd_optics_are_refused_naming_the_flag_and_range(flags, named, expected, tmp_path, capsys):
    out = tmp_path / "s.h5"
    assert main(["simulate", "--out", str(out), *SMALL, *flags]) == 2
    line = one_error_line(capsys)
    assert named in line and expected in line and "warning" not in line, line
    assert not out.exists()


def test_import_names_the_pixel_size_flag(tmp_path, capsys):
    mat = tmp_path / "x.mat"
    mat.write_bytes(b"not read: the flags are checked first")
    assert main(["import", str(mat), "--frame-type", "intensity", "--na", "0.1", "--magnification", "2",
                 "--pixel-size", "1e-300", "--out", str(tmp_path / "x.h5")]) == 2
    line = one_error_line(capsys)
    assert "--pixel-size must be between 1 nm and 1 mm" in line, line


@pytest.mark.parametrize("dataset, value, expected", [
    ("dxd", 1e300, "the pixel at the sample (dxd / magnification) must be between 1 nm and 1 mm"),
    ("magnification", 1e300, "the pixel at the sample (dxd / magnification)"),
    ("wavelength", 1.0, "wavelength must be between 10 nm and 10 um"),
    ("defocus", 1e300, "defocus must be at most 10 mm"),
])
def test_measurement_files_with_absurd_optics_are_refused(dataset, value, expected, measurement, tmp_path):
    path = tmp_path / "bad.h5"
    path.write_bytes(measurement.read_bytes())
    with h5py.File(path, "r+") as f:
        del f[dataset]
        f[dataset] = value
    with pytest.raises(InputFileError, match="must be") as caught:
        read_measurement(path)
    assert expected in str(caught.value) and str(path) in str(caught.value)


def test_acquisition_checks_ranges_without_overflow_warnings():
    kwargs = dict(wavelength=532e-9, na=0.08, magnification=4, camera_pixel=6.5e-6, frame_size=16, upsample=2,
                  led_positions=led_grid(3, 4e-3), led_distance=80e-3)
    with np.errstate(all="raise"):
        for bad, field in ((dict(camera_pixel=1e-300), "pixel at the sample"), (dict(defocus=0.02), "defocus"),
                           (dict(wavelength=1e-12), "wavelength"), (dict(led_distance=np.inf), "led_distance")):
            with pytest.raises(AcquisitionError, match=field):
                Acquisition(**{**kwargs, **bad})
    assert Acquisition(**kwargs).grid_size == 32  # sane optics still pass


# ---- 11: collapse to zero, the likely cause of a divergence, bad seeds and noise ------------------
def test_solver_failure_names_collapse_and_the_steps():
    U, d = torch.ones(2, 5, 2), torch.zeros(2, 2)
    options = SolverOptions(method="udu", step_d=1e9)
    what, advice = solver_failure(U, d, torch.ones(2), torch.ones(2), options, ("udu", "udu"))
    assert "collapsed to zero" in what and "--step-d, now 1e+09" in advice
    assert solver_failure(U, torch.ones(2, 2), torch.ones(2), torch.ones(2), options, ("udu", "udu")) is None


def test_solver_failure_sees_an_asymmetric_collapse_in_v_alone():
    U = torch.ones(2, 5, 2)
    U[:, 3:] = 0  # W = [U; V] with n1 = 3: V = 0, so X = U D V^* = 0 though U and d are not
    d = torch.ones(2, 2)
    options = SolverOptions(method="udv", step_d=1e9)
    what, advice = solver_failure(U, d, torch.ones(2), torch.ones(2), options, ("udv", "udv"), blocks=(3, 2))
    assert "collapsed to zero" in what and "--step-d, now 1e+09" in advice
    assert solver_failure(U, d, torch.ones(2), torch.ones(2), options, ("udv", "udv")) is None  # as X = W D W^*


def test_a_huge_d_step_is_reported_not_returned(fp_problem):
    operator, b = fp_problem
    options = SolverOptions(method="udu", step_d=1e9, max_iters=60, yield_every=5)
    with pytest.raises(SolverDivergedError, match=r"lower the D step \(--step-d, now 1e\+09\)"):
        for _ in iterate(operator, b, options):
            pass


def test_a_huge_xi_says_lower_xi(fp_problem):
    operator, b = fp_problem
    with pytest.raises(SolverDivergedError, match=r"lower xi \(--xi, now 1e\+09"):
        for _ in iterate(operator, b, SolverOptions(method="bm", xi=1e9, max_iters=20, yield_every=1)):
            pass


@pytest.mark.parametrize("argv, code, expected", [
    (["reconstruct", "{m}", "--preset", "paper", "--method", "udu", "--step-d", "1e9", "--iters", "50"], 1,
     "--step-d"),
    (["reconstruct", "{m}", "--preset", "paper", "--xi", "1e9", "--iters", "20"], 1, "lower xi (--xi"),
    (["reconstruct", "{m}", "--seed", str(2**64), "--iters", "2"], 2, "seed must be an integer in 0.."),
    (["sense", "--noise", "inf", "--iters", "2"], 2, "--noise must be a finite number >= 0"),
    (["sense", "--rank", "0", "--iters", "2"], 2, "rank must be an integer >= 1"),
])
def test_bad_solver_settings_end_in_one_line(argv, code, expected, measurement, tmp_path, capsys):
    argv = [a.replace("{m}", str(measurement)) for a in argv]
    assert main([*argv, "--out", str(tmp_path / "out"), "--no-progress"]) == code
    err = [line for line in capsys.readouterr().err.splitlines()
           if not line.startswith("ptycho-app: progress ")]  # --no-progress's records are not messages
    assert len(err) == 1 and expected in err[0], err
    assert not list((tmp_path / "out").glob("*.h5"))


def test_seed_range_is_checked_in_the_options():
    with pytest.raises(ValueError, match="seed must be an integer in 0"):
        SolverOptions(seed=2**64)
    with pytest.raises(ValueError, match="seed must be an integer in 0"):
        SolverOptions(seed=(0, -1))


# ---- 12 and 13: metrics files -----------------------------------------------------------------
def fake_result(path, input_file="tile.h5", reference=None, **attrs):
    rng = np.random.default_rng(0)
    obj = (rng.normal(size=(8, 8)) + 1j * rng.normal(size=(8, 8))).astype(np.complex64)
    result = Result(eigenvalues=np.array([2.0, 0.1]), loss=np.array([3.0, 2.0, 1.0]),
                    U=np.ones((64, 2), np.complex64), d=np.ones(2),
                    attrs={"method": path.name.split(".")[-2], "input_file": input_file, "rank": 2,
                           "iterations": 2, "run_iterations": 2, "seconds": 1.0, "relative_residual": 0.1,
                           "relative_residual_rank1": 0.7, **attrs},
                    object=obj, spectrum=obj, reference=reference)
    write_result(path, result)
    return path


def strict_json(text):
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")
    return json.loads(text, parse_constant=refuse)


def test_all_zero_truth_writes_null_with_a_reason(tmp_path):
    path = fake_result(tmp_path / "tile.bm.h5", reference=np.zeros((8, 8), np.complex64))
    report = compare_results([path], tmp_path)
    text = report["json"][0].read_text()
    assert "Infinity" not in text and "NaN" not in text
    row = strict_json(text)[0]
    assert row["relative_error"] is None and row["psnr"] is None and row["ssim"] is None
    assert row["relative_error_note"].startswith("truth is all zero")


def test_compare_names_metrics_after_the_input_and_keeps_both(tmp_path):
    compare_results([fake_result(tmp_path / "a.bm.h5", "a.h5")], tmp_path)
    compare_results([fake_result(tmp_path / "b.bm.h5", "b.h5")], tmp_path)
    for stem in ("a", "b"):
        assert strict_json((tmp_path / f"{stem}-metrics.json").read_text())[0]["input"] == f"{stem}.h5"
        assert (tmp_path / f"{stem}-metrics.md").read_text().startswith("| input | method |")
        assert (tmp_path / f"{stem}.comparison.png").read_bytes()[:4] == b"\x89PNG"
    assert not (tmp_path / "metrics.json").exists()


def test_compare_writes_everything_or_nothing(tmp_path, capsys):
    result = fake_result(tmp_path / "r" / "tile.bm.h5")
    out = tmp_path / "report"
    (out / "tile-metrics.md").mkdir(parents=True)  # the second file cannot be written
    before = sorted(p.name for p in out.iterdir())
    assert main(["compare", str(result), "--out", str(out)]) != 0
    assert sorted(p.name for p in out.iterdir()) == before  # no JSON, no PNG left behind
    err = capsys.readouterr().err
    assert "Traceback" not in err and ".part" not in err and len(err.strip().splitlines()) == 1


def test_a_failed_compare_keeps_the_earlier_outputs(tmp_path, capsys):
    result = fake_result(tmp_path / "r" / "tile.bm.h5")
    out = tmp_path / "report"
    assert main(["compare", str(result), "--out", str(out)]) == 0
    earlier = {p.name: p.read_bytes() for p in out.iterdir()}
    assert {"tile-metrics.json", "tile-metrics.md", "tile.comparison.png"} <= set(earlier)
    (out / "tile-metrics.md").unlink()
    (out / "tile-metrics.md").mkdir()  # now the second file cannot be written
    del earlier["tile-metrics.md"]
    assert main(["compare", str(result), "--out", str(out)]) != 0
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == earlier  # nothing removed or changed
    capsys.readouterr()


def test_a_write_failing_midway_leaves_the_earlier_outputs(tmp_path, capsys, monkeypatch):
    import contextlib
    import errno

    import ptycho_app.report as report

    result = fake_result(tmp_path / "r" / "tile.bm.h5")
    out = tmp_path / "report"
    assert main(["compare", str(result), "--out", str(out)]) == 0
    earlier = {p.name: p.read_bytes() for p in out.iterdir()}
    real_atomic_path = report.atomic_path

    @contextlib.contextmanager
    def full_disk_on_the_markdown(target, nbytes=0):
        with real_atomic_path(target, nbytes) as tmp:
            if str(target).endswith("-metrics.md"):  # the disk fills while the second file is written
                raise OSError(errno.ENOSPC, "No space left on device")
            yield tmp

    monkeypatch.setattr(report, "atomic_path", full_disk_on_the_markdown)
    monkeypatch.setattr(report, "render_figure", lambda *a, **k: b"\x89PNG new figure")
    assert main(["compare", str(result), "--out", str(out)]) != 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == earlier  # all old, no temporary files
    assert "no space left" in capsys.readouterr().err


def test_seconds_per_iteration_uses_totals_after_resume(tmp_path):
    path = fake_result(tmp_path / "tile.udu.h5", iterations=100, run_iterations=20, seconds=10.0, run_seconds=4.0)
    assert result_metrics(read_result(path))["seconds_per_iteration"] == pytest.approx(0.1)


# ---- 18: the residual of what is shown ----------------------------------------------------------
def test_results_record_the_shown_objects_residual(solved, measurement, capsys):
    m = read_measurement(measurement)
    for method in ("bm", "udu"):
        result = read_result(solved / f"small.{method}.h5")
        shown = fp_intensities(result.object.astype(np.complex128), m.acquisition)
        expected = np.linalg.norm(shown - m.intensities()) / np.linalg.norm(m.intensities())
        assert result.attrs["relative_residual_rank1"] == pytest.approx(expected, rel=2e-3)
        assert result.attrs["relative_residual_rank1"] >= result.attrs["relative_residual"] * 0.999
        text = describe_result(result)
        assert "for X (rank 4)" in text and "for the shown object's x x^* (rank one)" in text
    assert main(["compare", str(solved / "small.bm.h5"), str(solved / "small.udu.h5")]) == 0
    rows = strict_json((solved / "small-metrics.json").read_text())
    assert all(row["relative_residual_rank1"] > 0 for row in rows)
    assert "relative_residual_rank1" in capsys.readouterr().out


def test_info_on_a_rank_one_result_has_no_empty_ratio_line(tmp_path):
    path = tmp_path / "one.bm.h5"
    write_result(path, Result(eigenvalues=np.array([2.0]), loss=np.array([2.0, 1.0]), U=np.ones((4, 1)),
                              d=np.ones(1), attrs={"method": "bm", "rank": 1, "relative_residual": 0.2}))
    text = describe_result(read_result(path))
    assert "lambda_k" not in text and "lambda_1 = 2.0000e+00" in text


def test_widget_status_names_both_residuals():
    pytest.importorskip("magicgui")
    from napari_ptycho._widget import ReconstructionWidget

    from ptycho_app.live import LiveUpdate, SolverView

    view = SolverView(np.zeros((2, 2)), np.zeros((2, 2)), np.ones(2), np.ones(3), 0.1, 0.7)
    text = ReconstructionWidget.progress_text(LiveUpdate(5, {"udu": view}, 1.0))
    assert "relative residual of X UDU 1.00e-01 (shown x x^*: 7.00e-01)" in text


# ---- 19: progress records in the log -------------------------------------------------------------
def test_run_logs_one_line_progress_records(fp_problem, caplog):
    operator, b = fp_problem
    options = SolverOptions(method="bm", max_iters=20, yield_every=5)
    with caplog.at_level(logging.INFO, logger="ptycho_app"):
        states = list(run(operator, b, options, label="BM small", log_seconds=0.0))
    records = [r for r in caplog.records if r.name == "ptycho_app"]
    assert len(records) == len(states) == 4
    last = records[-1].getMessage()
    assert last.startswith("BM small: iteration 20/20, loss BM ") and "relative residual BM " in last
    assert "\n" not in last


def test_no_progress_shows_records_on_stderr(measurement, tmp_path, capsys):
    assert main(["reconstruct", str(measurement), "--iters", "10", "--out", str(tmp_path), "--no-progress"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err and all(line.startswith("ptycho-app: progress ") for line in err)
    assert "BM+UDU small: iteration 10/10" in err[-1] and "relative residual" in err[-1]
    assert not logging.getLogger("ptycho_app").handlers  # the CLI's handler is removed afterwards
    assert main(["reconstruct", str(measurement), "--iters", "10", "--out", str(tmp_path / "bars")]) == 0
    assert "ptycho-app: progress" not in capsys.readouterr().err  # with the bars, no records
