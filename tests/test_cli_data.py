"""The data commands as a user runs them: simulate -> reconstruct -> compare / info, resume, Ctrl-C,
batching, sense, and a one-line error with exit code 2 for every bad input."""

import hashlib
import json

import h5py
import numpy as np
import pytest

import ptycho_app.batch
import ptycho_app.session
from ptycho_app.analysis import relative_error
from ptycho_app.cli import main
from ptycho_app.io.measurement import read_measurement
from ptycho_app.io.results import read_result
from ptycho_app.physics import band_limit
from ptycho_app.session import RunOptions

SMALL = ["--frame-size", "16", "--upsample", "2", "--leds", "5"]


def simulate(tmp_path, name="small.h5", *extra):
    path = tmp_path / name
    assert main(["simulate", "--out", str(path), *SMALL, *extra]) == 0
    return path


def messages(stderr: str) -> list[str]:
    """stderr's lines without ``--no-progress``'s periodic progress records."""
    return [line for line in stderr.strip().splitlines() if not line.startswith("ptycho-app: progress ")]


def reconstruct(*argv):
    return main(["reconstruct", "--no-progress", *map(str, argv)])


@pytest.fixture(scope="module")
def solved(tmp_path_factory):
    """One simulated file reconstructed with both solvers (shared by the read-only checks)."""
    tmp = tmp_path_factory.mktemp("flow")
    measurement = simulate(tmp)
    before = measurement.read_bytes()
    assert reconstruct(measurement, "--iters", "600", "--out", tmp / "results") == 0
    return tmp, measurement, before


def test_simulate_writes_the_requested_acquisition(solved):
    _, measurement, _ = solved
    m = read_measurement(measurement)
    assert m.frames.shape == (25, 16, 16) and m.acquisition.grid_size == 32
    assert m.ground_truth.shape == (32, 32)
    amplitude = np.abs(m.ground_truth)
    assert amplitude.min() == pytest.approx(0.3, abs=1e-6) and amplitude.max() == pytest.approx(1.0, abs=1e-6)


def test_result_files_hold_the_documented_layout(solved):
    tmp, measurement, before = solved
    assert measurement.read_bytes() == before  # input untouched
    sha = hashlib.sha256(before).hexdigest()
    for solver in ("bm", "udu"):
        path = tmp / "results" / f"small.{solver}.h5"
        with h5py.File(path, "r") as f:
            assert f["object"].shape == (32, 32) and f["object"].dtype == np.complex64
            assert f["spectrum"].shape == (32, 32) and f["loss"].shape == (601,)
            assert f["factors/U"].shape == (1024, 4) and f["factors/d"].shape == (4,)
            values = f["eigenvalues"][()]
            assert values.shape == (4,) and np.all(np.diff(values) <= 0)
            for key in ("method", "preset", "rank", "loss", "precondition", "momentum", "init", "step", "xi",
                        "iterations", "seed", "app_version", "input_file", "input_sha256"):
                assert key in f.attrs, key
            assert f.attrs["method"] == solver and f.attrs["iterations"] == 600 and f.attrs["preset"] == "fast"
            assert ("radius" in f.attrs) == ("step_d" in f.attrs) == (solver == "udu")  # UDU's own options
            assert f.attrs["input_sha256"] == sha and f.attrs["input_file"] == "small.h5"
        result = read_result(path)
        # the stored object is the eigen-spectrum's object, and errors are computed against the band limit
        m = read_measurement(measurement)
        truth = band_limit(m.ground_truth.astype(np.complex128), m.acquisition)
        np.testing.assert_allclose(result.reference, truth, atol=1e-6)
        assert relative_error(result.object, truth) < 0.15
    assert not list((tmp / "results").glob("*.part"))


def test_udu_is_rank_one_where_bm_is_not(solved):
    """With the fast defaults (600 iterations, rank 4) on the exact sub-pixel simulation: UDU's
    lambda_2/lambda_1 8e-8, BM's 6.4e-6 when measured (3.5e-5 on the rounded-window simulation
    before version 0.3: BM's surplus eigenvalues shrink as its fit converges, and the exact model fits
    better)."""
    tmp, _, _ = solved
    bm, udu = (read_result(tmp / "results" / f"small.{s}.h5") for s in ("bm", "udu"))
    bm_ratio, udu_ratio = (r.eigenvalues[1] / r.eigenvalues[0] for r in (bm, udu))
    assert udu_ratio < 1e-6, (bm_ratio, udu_ratio)
    assert bm_ratio > 2e-6, (bm_ratio, udu_ratio)
    assert bm_ratio > 30 * udu_ratio, (bm_ratio, udu_ratio)


def test_paper_preset_keeps_the_papers_contrast(tmp_path):
    """--preset paper runs the papers' algorithms: BM's lambda_2/lambda_1 stays above 1e-3, UDU's below 1e-6."""
    measurement = simulate(tmp_path)
    assert reconstruct(measurement, "--preset", "paper", "--iters", "600", "--out", tmp_path / "r") == 0
    bm, udu = (read_result(tmp_path / "r" / f"small.{s}.h5") for s in ("bm", "udu"))
    assert bm.attrs["loss"] == "intensity" and bm.attrs["init"] == "random" and bm.attrs["step"] == 0.25
    assert udu.eigenvalues[1] / udu.eigenvalues[0] < 1e-6
    assert bm.eigenvalues[1] / bm.eigenvalues[0] > 1e-3


def test_compare_writes_figure_and_tables(solved, capsys):
    tmp, measurement, _ = solved
    results = sorted((tmp / "results").glob("small.*.h5"))
    assert main(["compare", *map(str, results), "--out", str(tmp / "report")]) == 0
    png = (tmp / "report" / "small.comparison.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    rows = json.loads((tmp / "report" / "small-metrics.json").read_text())
    assert [row["method"] for row in rows] == ["bm", "udu"]
    m = read_measurement(measurement)
    truth = band_limit(m.ground_truth.astype(np.complex128), m.acquisition)
    for row, path in zip(rows, results, strict=True):
        result = read_result(path)  # errors are taken against the stored (complex64) band-limited reference
        assert row["relative_error"] == pytest.approx(relative_error(result.object, result.reference), rel=1e-6)
        assert row["relative_error"] == pytest.approx(relative_error(result.object, truth), rel=1e-2)
        assert row["psnr"] > 60 and 0.999 < row["ssim"] <= 1 + 1e-6 and row["iterations"] == 600  # the fast defaults
    markdown = (tmp / "report" / "small-metrics.md").read_text()
    assert markdown.startswith("| input | method | relative_error") and markdown.count("\n") == 11
    assert "| small.h5 | udu | preset fast, rank 4, loss amplitude" in markdown
    assert "| small.h5 | udu |" in capsys.readouterr().out


def test_info_describes_measurements_and_results(solved, capsys):
    tmp, measurement, _ = solved
    assert main(["info", str(measurement), str(tmp / "results" / "small.udu.h5")]) == 0
    out = capsys.readouterr().out
    assert "25 x 16 x 16 intensity" in out and "9 frames" in out and "wavelength 532.0 nm" in out
    assert "UDU result" in out and "iterations:    600" in out and "relative error" in out


def test_inputs_with_one_acquisition_are_solved_together_like_alone(tmp_path):
    first = simulate(tmp_path, "a.h5")
    second = simulate(tmp_path, "b.h5", "--amplitude-image", "moon", "--phase-image", "coins")
    calls = []
    assert ptycho_app.batch.reconstruct_files([first, second], RunOptions(method="udu"), tmp_path / "together",
                                              progress=False, max_iters=150, on_update=calls.append) == [
        tmp_path / "together" / "a.udu.h5", tmp_path / "together" / "b.udu.h5"]
    assert calls[-1].U.shape[0] == 2  # one batched solve
    assert reconstruct(second, "--method", "udu", "--iters", "150", "--seed", "1", "--out", tmp_path / "alone") == 0
    together, alone = read_result(tmp_path / "together" / "b.udu.h5"), read_result(tmp_path / "alone" / "b.udu.h5")
    assert together.attrs["seed"] == alone.attrs["seed"] == 1
    np.testing.assert_allclose(together.U, alone.U, rtol=1e-4, atol=1e-4 * np.abs(alone.U).max())
    np.testing.assert_allclose(together.loss, alone.loss, rtol=1e-4)


def test_resume_continues_exactly(tmp_path):
    measurement = simulate(tmp_path)
    plain = ("--momentum", "none")  # a resumed run restarts Nesterov's momentum (docs/solvers.md)
    assert reconstruct(measurement, "--method", "bm", *plain, "--iters", "200", "--out", tmp_path / "straight") == 0
    assert reconstruct(measurement, "--method", "bm", *plain, "--iters", "80", "--out", tmp_path / "split") == 0
    assert reconstruct(measurement, "--method", "bm", *plain, "--iters", "120", "--out", tmp_path / "split",
                       "--resume") == 0
    straight, split = (read_result(tmp_path / d / "small.bm.h5") for d in ("straight", "split"))
    assert split.iterations == 200 and split.loss.shape == (201,)
    np.testing.assert_allclose(split.loss, straight.loss, rtol=1e-4)
    np.testing.assert_allclose(split.U, straight.U, rtol=1e-4, atol=1e-5 * np.abs(straight.U).max())


def test_ctrl_c_writes_a_resumable_result(tmp_path, monkeypatch, capsys):
    measurement = simulate(tmp_path)
    real_iterate = ptycho_app.session.iterate

    def interrupted_iterate(*args, **kwargs):
        for state in real_iterate(*args, **kwargs):
            yield state
            if state.iteration >= 60:
                raise KeyboardInterrupt

    monkeypatch.setattr(ptycho_app.session, "iterate", interrupted_iterate)
    plain = ("--momentum", "none")  # a resumed run restarts Nesterov's momentum (docs/solvers.md)
    assert reconstruct(measurement, "--method", "udu", *plain, "--iters", "200", "--out", tmp_path / "run") == 130
    assert "continue with --resume" in capsys.readouterr().err
    partial = read_result(tmp_path / "run" / "small.udu.h5")
    assert partial.attrs["interrupted"] and partial.iterations == 60
    monkeypatch.setattr(ptycho_app.session, "iterate", real_iterate)
    assert reconstruct(measurement, "--method", "udu", *plain, "--iters", "140", "--out", tmp_path / "run",
                       "--resume") == 0
    assert reconstruct(measurement, "--method", "udu", *plain, "--iters", "200", "--out", tmp_path / "straight") == 0
    resumed, straight = (read_result(tmp_path / d / "small.udu.h5") for d in ("run", "straight"))
    assert not resumed.attrs["interrupted"] and resumed.iterations == 200
    np.testing.assert_allclose(resumed.loss, straight.loss, rtol=1e-4)


def test_resume_refuses_a_result_of_another_input(tmp_path, capsys):
    measurement = simulate(tmp_path)
    assert reconstruct(measurement, "--method", "bm", "--iters", "5", "--out", tmp_path / "r") == 0
    simulate(tmp_path, "small.h5", "--amplitude-image", "moon", "--overwrite")  # same name, new contents
    assert reconstruct(measurement, "--method", "bm", "--iters", "5", "--out", tmp_path / "r", "--resume") == 2
    err = messages(capsys.readouterr().err)
    assert len(err) == 1 and "small.bm.h5" in err[0] and "sha256 differs" in err[0]


def test_inputs_are_opened_read_only(tmp_path, monkeypatch):
    measurement = simulate(tmp_path)
    digest = hashlib.sha256(measurement.read_bytes()).hexdigest()
    opened = []
    real_file = h5py.File

    def recording_file(name, mode="r", *args, **kwargs):
        opened.append((str(name), mode))
        return real_file(name, mode, *args, **kwargs)

    monkeypatch.setattr(h5py, "File", recording_file)
    assert reconstruct(measurement, "--method", "bm", "--iters", "5", "--out", tmp_path / "r") == 0
    assert (str(measurement), "r") in opened
    assert all(mode == "r" for name, mode in opened if name == str(measurement))
    assert hashlib.sha256(measurement.read_bytes()).hexdigest() == digest


def test_seeds_follow_the_input_order_across_groups(tmp_path):
    a = simulate(tmp_path, "a.h5")
    d = simulate(tmp_path, "d.h5", "--leds", "3")  # another acquisition: solved separately
    c = simulate(tmp_path, "c.h5", "--amplitude-image", "moon")
    assert reconstruct(a, d, c, "--method", "bm", "--iters", "3", "--seed", "10", "--out", tmp_path / "r") == 0
    seeds = [read_result(tmp_path / "r" / f"{stem}.bm.h5").attrs["seed"] for stem in "adc"]
    assert seeds == [10, 11, 12]


def test_resume_keeps_provenance_and_refuses_other_steps(tmp_path, capsys):
    measurement = simulate(tmp_path)
    out = tmp_path / "r"
    assert reconstruct(measurement, "--method", "udu", "--iters", "20", "--seed", "5", "--out", out) == 0
    first = read_result(out / "small.udu.h5")
    assert reconstruct(measurement, "--method", "udu", "--iters", "20", "--out", out, "--resume") == 0
    second = read_result(out / "small.udu.h5")
    assert second.attrs["seed"] == 5 and second.attrs["resumed"] and second.iterations == 40
    assert second.attrs["seconds"] == pytest.approx(first.attrs["seconds"] + second.attrs["run_seconds"])
    capsys.readouterr()
    assert reconstruct(measurement, "--method", "udu", "--iters", "5", "--step", "0.01", "--out", out,
                       "--resume") == 2
    err = messages(capsys.readouterr().err)
    assert len(err) == 1 and "was run with step 0.25; resume with --step 0.25" in err[0]
    assert reconstruct(measurement, "--method", "udu", "--iters", "5", "--loss", "poisson", "--out", out,
                       "--resume") == 2
    err = messages(capsys.readouterr().err)
    assert len(err) == 1 and "was run with loss amplitude; resume with --loss amplitude" in err[0]


def test_ctrl_c_before_the_first_update_says_nothing_was_written(tmp_path, monkeypatch, capsys):
    measurement = simulate(tmp_path)

    def interrupted_at_once(*args, **kwargs):
        raise KeyboardInterrupt
        yield  # a generator, like the real one

    monkeypatch.setattr(ptycho_app.session, "iterate", interrupted_at_once)
    assert reconstruct(measurement, "--iters", "50", "--out", tmp_path / "r") == 130
    assert "nothing written" in capsys.readouterr().err
    assert not list((tmp_path / "r").glob("*.h5"))


def test_geometry_options_of_simulate(tmp_path):
    from ptycho_app.physics import direction_sines_from_leds
    from ptycho_app.simulation import led_array

    turned = simulate(tmp_path, "turned.h5", "--rotation", "30", "--center-offset", "0.001", "-0.002",
                      "--noise", "gaussian", "--sigma", "0.05")
    expected = direction_sines_from_leds(led_array(5, 4e-3, (1e-3, -2e-3), 30), 80e-3)
    np.testing.assert_allclose(read_measurement(turned).acquisition.direction_sines, expected, rtol=1e-12)
    positions = tmp_path / "leds.csv"
    positions.write_text("y,x\n0,0\n0.004,0\n0,-0.004\n")
    from_csv = tmp_path / "csv.h5"
    assert main(["simulate", *SMALL[:4], "--led-positions", str(positions), "--distance", "0.05",
                 "--out", str(from_csv)]) == 0
    np.testing.assert_allclose(read_measurement(from_csv).acquisition.direction_sines,
                               direction_sines_from_leds(np.array([[0, 0], [0.004, 0], [0, -0.004]]), 0.05))
    sines = np.array([[0.0, 0.0], [0.05, 0.02]])
    np.save(tmp_path / "sines.npy", sines)
    from_sines = tmp_path / "sines.h5"
    assert main(["simulate", *SMALL[:4], "--direction-sines", str(tmp_path / "sines.npy"),
                 "--out", str(from_sines)]) == 0
    np.testing.assert_allclose(read_measurement(from_sines).acquisition.direction_sines, sines)


def test_small_negatives_are_clipped_with_a_one_line_warning(tmp_path, capsys):
    measurement = simulate(tmp_path)
    with h5py.File(measurement, "r+") as f:
        frames = f["ptychogram"][()]
        frames[0, 0, 0] = -1e-4
        f["ptychogram"][...] = frames
    assert reconstruct(measurement, "--method", "bm", "--iters", "5", "--out", tmp_path / "r") == 0
    err = messages(capsys.readouterr().err)
    assert len(err) == 1 and "warning" in err[0] and "clipped 1 negative values" in err[0]


def test_simulate_options(tmp_path):
    spiral = simulate(tmp_path, "spiral.h5", "--order", "spiral", "--noise", "poisson", "--photons", "100",
                      "--frame-type", "amplitude")
    raster = simulate(tmp_path, "raster.h5")
    s, r = read_measurement(spiral), read_measurement(raster)
    assert s.frame_type == "amplitude"
    # spiral order starts at the centre LED; the same LEDs as the raster grid
    assert np.allclose(s.acquisition.led_positions[0], 0)
    np.testing.assert_allclose(np.sort(s.acquisition.led_positions, axis=0), np.sort(r.acquisition.led_positions,
                                                                                      axis=0))
    # noise: about 100 photons per bright-field pixel -> relative deviation about 1/sqrt(100)
    order = [int(np.argmin(np.abs(r.acquisition.led_positions - p).sum(axis=1))) for p in s.acquisition.led_positions]
    clean = r.frames[order]
    bright = s.acquisition.bright_field
    deviation = (s.intensities() - clean)[bright]
    expected = np.sqrt(clean[bright] * clean[bright].mean() / 100)
    assert np.std(deviation / expected) == pytest.approx(1.0, abs=0.1)


def test_object_and_geometry_from_files(tmp_path):
    geometry = simulate(tmp_path, "geometry.h5")
    rng = np.random.default_rng(0)
    obj = (rng.uniform(0.5, 1, (32, 32)) * np.exp(1j * rng.uniform(-1, 1, (32, 32)))).astype(np.complex64)
    np.save(tmp_path / "object.npy", obj)
    out = tmp_path / "own.h5"
    assert main(["simulate", "--object", str(tmp_path / "object.npy"), "--geometry", str(geometry),
                 "--out", str(out)]) == 0
    m = read_measurement(out)
    np.testing.assert_array_equal(m.ground_truth, obj)
    np.testing.assert_allclose(m.acquisition.direction_sines, read_measurement(geometry).acquisition.direction_sines)
    frames = np.abs(np.fft.ifft2(np.fft.ifftshift(np.fft.fftshift(np.fft.fft2(obj))[8:24, 8:24]
                                                  * m.acquisition.pupil_function())) / 4) ** 2
    np.testing.assert_allclose(m.frames[12], frames, rtol=1e-4, atol=1e-6)  # the on-axis LED


def test_sense_reproduces_exact_low_rank(tmp_path, capsys):
    out = tmp_path / "sense"
    assert main(["sense", "--n", "30", "--truth-rank", "2", "--iters", "1500", "--no-progress", "--out", str(out)]) == 0
    bm, udu = (read_result(out / f"completion-n30-r2-m180.{s}.h5") for s in ("bm", "udu"))
    assert bm.U.shape == (30, 30) and udu.reference_matrix.shape == (30, 30)
    np.testing.assert_allclose(np.linalg.eigvalsh(udu.reference_matrix)[-2:], [1, 2], atol=1e-12)
    assert udu.eigenvalues[2] / udu.eigenvalues[0] < 1e-12
    assert bm.eigenvalues[2] / bm.eigenvalues[0] > 1e-6
    rows = json.loads((out / "completion-n30-r2-m180-metrics.json").read_text())
    assert all(row["relative_error"] < 0.1 for row in rows)
    assert (out / "completion-n30-r2-m180.comparison.png").stat().st_size > 10_000


# ---- bad input: one line naming the file and the problem, exit code 2 --------------------------
def damage(path, name, value=None):
    with h5py.File(path, "r+") as f:
        del f[name]
        if value is not None:
            f[name] = value


def replace_by_group(path, name):
    with h5py.File(path, "r+") as f:
        del f[name]
        f.create_group(name)


BAD_FILES = {
    "missing ptychogram": (lambda p: damage(p, "ptychogram"), "ptychogram: missing"),
    "wrong shape": (lambda p: damage(p, "ptychogram", np.ones((25, 256))), "ptychogram: expected 3 axes"),
    "complex frames": (lambda p: damage(p, "ptychogram", np.ones((25, 16, 16), np.complex64)),
                       "expected real numbers"),
    "NaN": (lambda p: damage(p, "ptychogram", np.full((25, 16, 16), np.nan)), "NaN/Inf"),
    "negative throughout": (lambda p: damage(p, "ptychogram", -np.ones((25, 16, 16))), "negative throughout"),
    "frames vs LEDs": (lambda p: damage(p, "encoder", np.zeros((30, 2))), "inconsistent geometry"),
    "zero wavelength": (lambda p: damage(p, "wavelength", 0.0), "wavelength: must be positive"),
    "NA >= 1": (lambda p: damage(p, "NA", 1.0), "NA: must lie in (0, 1)"),
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[:3000]), "not a readable HDF5 file"),
    "not HDF5": (lambda p: p.write_text("frames,leds\n1,2\n"), "not a readable HDF5 file"),
    "frame_type group": (lambda p: replace_by_group(p, "frame_type"), "frame_type: cannot be read"),
    "float32 overflow": (lambda p: damage(p, "ptychogram", np.full((25, 16, 16), 1e39)), "overflow float32"),
    "all zero": (lambda p: damage(p, "ptychogram", np.zeros((25, 16, 16), np.float32)), "all frames are zero"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_measurement_file_exits_2_with_one_line(case, tmp_path, capsys):
    path = simulate(tmp_path, "bad.h5")
    capsys.readouterr()
    BAD_FILES[case][0](path)
    before = path.read_bytes()
    assert reconstruct(path, "--iters", "5", "--out", tmp_path / "r") == 2
    err = messages(capsys.readouterr().err)
    assert len(err) == 1 and str(path) in err[0] and BAD_FILES[case][1] in err[0], err
    assert path.read_bytes() == before and not (tmp_path / "r" / "bad.bm.h5").exists()


@pytest.mark.parametrize("argv, expected", [
    (["reconstruct", "absent.h5"], "absent.h5: no such file"),
    (["reconstruct", "x.h5", "--frobnicate"], "unrecognized arguments: --frobnicate"),
    (["reconstruct", "x.h5", "--method", "admm"], "invalid choice: 'admm'"),
    (["reconstruct", "x.h5", "--iters", "ten"], "invalid int value: 'ten'"),
    (["simulate", "--na", "1.5", "--out", "{tmp}/s.h5"], "na must lie in (0, 1)"),
    (["simulate", "--wavelength", "-1", "--out", "{tmp}/s.h5"], "wavelength must be a positive number"),
    (["simulate", "--amplitude-image", "cat", "--out", "{tmp}/s.h5"], "unknown image 'cat'"),
    (["simulate", "--object", "{tmp}/missing.npy", "--out", "{tmp}/s.h5"], "missing.npy: no such file"),
    (["simulate", "--leds", "25", "--out", "{tmp}/s.h5"], "increase upsample"),
    (["info", "{tmp}"], "is a folder"),
    (["compare", "{tmp}/m.h5"], "m.h5: eigenvalues: missing (a measurement file"),
    (["sense", "--truth-rank", "0"], "--truth-rank must be an integer >= 1"),
    (["sense", "--rank", "0"], "solver option rank must be an integer >= 1"),
    (["sense", "--precondition", "spectral", "--iters", "2"], "spectral preconditioner needs an FP operator"),
    (["reconstruct", "{tmp}/m.h5", "--loss", "huber"], "invalid choice: 'huber'"),
    (["import", "{tmp}/m.h5", "--frame-type", "intensity", "--na", "0.1", "--magnification", "2",
      "--pixel-size", "1e-6", "--out", "{tmp}/imported.h5"], "m.h5: illumination: no illumination"),
    (["reconstruct", "{tmp}/m.h5", "--batch-size", "0"], "--batch-size must be a positive integer"),
])
def test_bad_commands_exit_2_with_one_line(argv, expected, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    simulate(tmp_path, "m.h5")
    capsys.readouterr()
    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    err = messages(capsys.readouterr().err)
    assert len(err) == 1 and expected in err[0], err


def test_result_given_to_reconstruct_is_explained(solved, capsys):
    tmp, _, _ = solved
    assert reconstruct(tmp / "results" / "small.udu.h5", "--out", tmp / "again") == 2
    assert "ptychogram: missing" in capsys.readouterr().err


def test_blood_smear_tile_imports_and_reconstructs(tmp_path, capsys):
    """Real measured data (../shared): the central 32 x 32 tile of the red channel, as in docs/data.md."""
    from pathlib import Path

    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "fpm_bloodsmear_uconn"
    if not shared.is_dir():
        pytest.skip(f"real data not found: {shared} (../shared is absent)")
    measurement = tmp_path / "red.h5"
    assert main(["import", str(shared / "bloodsmear_red.mat"), "--illumination",
                 str(shared / "illumination_bloodsmear_red.csv"), "--frame-type", "intensity", "--na", "0.1",
                 "--magnification", "2", "--pixel-size", "1.845e-6", "--upsample", "4", "--crop", "32",
                 "--out", str(measurement)]) == 0
    m = read_measurement(measurement)
    assert m.frames.shape == (225, 32, 32) and m.acquisition.grid_size == 128
    assert int(m.acquisition.bright_field.sum()) == 21 and m.acquisition.defocus == -55e-6
    assert reconstruct(measurement, "--method", "both", "--iters", "300", "--out", tmp_path / "r") == 0
    for solver in ("bm", "udu"):
        result = read_result(tmp_path / "r" / f"red.{solver}.h5")
        assert result.attrs["relative_residual"] < 0.3  # from 1.0 at the small start
        assert result.loss[-1] < 0.1 * result.loss[0]
        assert np.all(np.diff(result.eigenvalues) <= 0) and result.object.shape == (128, 128)


def test_both_solvers_run_side_by_side_in_one_batched_solve(tmp_path):
    measurement = simulate(tmp_path)
    calls = []
    written = ptycho_app.batch.reconstruct_files([measurement], RunOptions(method="both"), tmp_path / "both",
                                                 progress=False, max_iters=100, on_update=calls.append)
    assert [p.name for p in written] == ["small.bm.h5", "small.udu.h5"]
    assert calls[-1].U.shape[0] == 2  # BM and UDU in one batch
    for solver in ("bm", "udu"):
        assert reconstruct(measurement, "--method", solver, "--iters", "100", "--out", tmp_path / solver) == 0
        together, alone = (read_result(tmp_path / d / f"small.{solver}.h5") for d in ("both", solver))
        assert together.attrs["method"] == solver and together.attrs["step"] == alone.attrs["step"]
        np.testing.assert_allclose(together.loss, alone.loss, rtol=1e-4)
        np.testing.assert_allclose(together.U, alone.U, rtol=1e-4, atol=1e-4 * np.abs(alone.U).max())


def test_resume_of_a_0_1_result_asks_for_the_paper_preset(tmp_path, capsys):
    """Result files before 0.2 (attribute 'solver', no 'loss' or 'preset') were the papers' algorithms:
    resuming them under the default fast preset is refused, naming --preset paper; with it, it continues."""
    measurement = simulate(tmp_path)
    out = tmp_path / "r"
    assert reconstruct(measurement, "--method", "bm", "--preset", "paper", "--iters", "10", "--out", out) == 0
    with h5py.File(out / "small.bm.h5", "r+") as f:  # make it look like a 0.1 file
        f.attrs["solver"] = f.attrs["method"]
        for key in ("method", "preset", "loss", "precondition", "precondition_alpha", "momentum", "init",
                    "step_schedule", "scaled_lambda"):
            del f.attrs[key]
    capsys.readouterr()
    assert reconstruct(measurement, "--method", "bm", "--iters", "5", "--out", out, "--resume") == 2
    err = messages(capsys.readouterr().err)
    assert len(err) == 1 and "was run with preset paper; resume with --preset paper" in err[0]
    assert reconstruct(measurement, "--method", "bm", "--preset", "paper", "--iters", "5", "--out", out,
                       "--resume") == 0
    assert read_result(out / "small.bm.h5").iterations == 15


def test_sense_records_each_methods_own_iterations(tmp_path):
    """BM and UDU share one batched solve; with --tol one may stop first, and each file says where."""
    out = tmp_path / "sense"
    assert main(["sense", "--n", "12", "--truth-rank", "1", "--iters", "3000", "--tol", "2e-3", "--no-progress",
                 "--out", str(out)]) == 0
    for method in ("bm", "udu"):
        result = read_result(out / f"completion-n12-r1-m36.{method}.h5")
        assert result.loss.shape == (result.iterations + 1,)
    iterations = {m: read_result(out / f"completion-n12-r1-m36.{m}.h5").iterations for m in ("bm", "udu")}
    assert min(iterations.values()) < 3000, iterations


def test_sense_offers_only_the_paper_preset(capsys):
    assert main(["sense", "--preset", "fast"]) == 2
    assert "invalid choice: 'fast'" in capsys.readouterr().err


def test_resume_with_a_new_input_starts_it_as_if_alone(tmp_path):
    """--resume over two inputs where only one has a result: the other takes the options' start in the
    same batched solve and ends exactly where it would alone (seed 1: its place in the input order)."""
    first = simulate(tmp_path, "a.h5")
    second = simulate(tmp_path, "b.h5", "--amplitude-image", "moon")
    assert reconstruct(first, "--method", "udu", "--iters", "30", "--out", tmp_path / "r") == 0
    assert reconstruct(first, second, "--method", "udu", "--iters", "30", "--out", tmp_path / "r", "--resume") == 0
    assert reconstruct(second, "--method", "udu", "--iters", "30", "--seed", "1", "--out", tmp_path / "alone") == 0
    resumed, new, alone = (read_result(tmp_path / d / f"{s}.udu.h5") for d, s in
                           (("r", "a"), ("r", "b"), ("alone", "b")))
    assert resumed.iterations == 60 and resumed.attrs["resumed"] and not new.attrs["resumed"]
    np.testing.assert_allclose(new.U, alone.U, rtol=1e-5, atol=1e-6 * np.abs(alone.U).max())
    np.testing.assert_allclose(new.loss, alone.loss, rtol=1e-5)
