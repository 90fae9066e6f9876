"""Issue 10, items 5-9: damaged HDF5 files, huge declared shapes, bad result files, Ctrl-C during
start-up and non-regular files end in one line and a non-zero exit code, never a traceback or a hang."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest
from napari_ptycho._reader import get_reader, read_ptycho

from ptycho_app import resources
from ptycho_app.cli import COMMANDS, main
from ptycho_app.io.errors import InputFileError
from ptycho_app.io.measurement import read_measurement, write_measurement
from ptycho_app.io.results import Result, read_result, write_result
from ptycho_app.simulation import default_acquisition

#: What ``available_memory`` reports in the tests, so that refusals do not depend on the machine.
AVAILABLE = 21 * 2**30


@pytest.fixture
def measurement_file(tmp_path):
    """A valid 9 x 8 x 8 measurement (16 x 16 object grid)."""
    acquisition = default_acquisition(frame_size=8, upsample=2, leds_per_side=3)
    frames = np.random.default_rng(0).uniform(0.1, 1.0, (9, 8, 8))
    path = tmp_path / "data" / "meas.h5"
    path.parent.mkdir()
    write_measurement(path, frames, acquisition, ground_truth=np.ones((16, 16), np.complex64))
    return path


def make_result(path, **changes):
    """A valid FP result (n = 16 x 16, rank 2) written to ``path``, with some fields replaced."""
    n, r = 256, 2
    rng = np.random.default_rng(1)
    fields = dict(eigenvalues=np.array([2.0, 1.0]), loss=np.array([3.0, 2.0, 1.0]),
                  U=(rng.standard_normal((n, r)) + 1j * rng.standard_normal((n, r))).astype(np.complex64),
                  d=np.ones(r), object=np.ones((16, 16), np.complex64), spectrum=np.ones((16, 16), np.complex64),
                  attrs={"method": "bm", "problem": "fp", "input_file": "meas.h5", "rank": r, "iterations": 2})
    fields.update(changes)
    write_result(path, Result(**fields))
    return path


@pytest.fixture
def result_file(tmp_path):
    path = tmp_path / "results" / "meas.bm.h5"
    path.parent.mkdir()
    return make_result(path)


def one_line_error(capsys, name):
    """The single stderr line of a failed command, checked to name the file and hold no traceback."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and name in lines[0], err
    return lines[0]


# ---- 5. flipped bytes in HDF5 metadata --------------------------------------------------------------
#: Opens a file with h5py and reads every dataset and attribute; exit status 1 when h5py raises.
READ_ALL = textwrap.dedent("""
    import sys, h5py
    with h5py.File(sys.argv[1], "r") as f:
        dict(f.attrs)
        f.visititems(lambda name, item: item[()] if isinstance(item, h5py.Dataset) else None)
""")


def metadata_offsets(path):
    """File offsets of HDF5 metadata: the superblock's root entry and every object header
    (root group and datasets), plus a few bytes into each header."""
    with h5py.File(path, "r") as f:
        headers = {h5py.h5o.get_info(f.id).addr}
        f.visititems(lambda name, item: headers.add(h5py.h5o.get_info(item.id).addr))
    return sorted({48, 64} | {addr + k for addr in headers for k in (0, 2, 5)})


def damaged_copies(path, folder, limit=6):
    """Copies of ``path`` with one metadata byte flipped, kept only where h5py itself fails to read
    the file (a Python exception: exit status 1 in a child; flips h5py reads through, or where the
    HDF5 library aborts, are dropped)."""
    folder.mkdir(exist_ok=True)
    data = path.read_bytes()
    kept = []
    for offset in metadata_offsets(path):
        damaged = bytearray(data)
        damaged[offset] ^= 0xFF
        copy = folder / f"{path.stem}.flip{offset}.h5"
        copy.write_bytes(bytes(damaged))
        child = subprocess.run([sys.executable, "-c", READ_ALL, str(copy)], capture_output=True, timeout=60)
        if child.returncode == 1:
            kept.append(copy)
        else:
            copy.unlink()
        if len(kept) == limit:
            break
    assert len(kept) >= 3, "fewer than 3 byte flips made h5py fail"
    return kept


def test_damaged_measurement_files_give_one_line(measurement_file, tmp_path, capsys):
    out = tmp_path / "out"
    for damaged in damaged_copies(measurement_file, tmp_path / "damaged"):
        assert main(["info", str(damaged)]) == 2
        one_line_error(capsys, damaged.name)
        assert main(["reconstruct", str(damaged), "--out", str(out), "--iters", "1", "--no-progress"]) == 2
        one_line_error(capsys, damaged.name)
        assert not out.exists() or not any(out.iterdir())
        assert get_reader(str(damaged)) is not None  # napari shows the reader's error, not "no reader"
        with pytest.raises(InputFileError, match=damaged.name) as error:
            read_ptycho(str(damaged))
        assert "\n" not in str(error.value)


def test_damaged_result_files_give_one_line(result_file, tmp_path, capsys):
    for damaged in damaged_copies(result_file, tmp_path / "damaged"):
        out = tmp_path / f"report-{damaged.stem}"
        assert main(["info", str(damaged)]) == 2
        one_line_error(capsys, damaged.name)
        assert main(["compare", str(result_file), str(damaged), "--out", str(out)]) == 2
        one_line_error(capsys, damaged.name)
        assert not out.exists() or not any(out.iterdir())  # all or nothing
        with pytest.raises(InputFileError, match=damaged.name) as error:
            read_ptycho(str(damaged))
        assert "\n" not in str(error.value)


def test_damaged_dataset_header_names_the_dataset(measurement_file, tmp_path):
    with h5py.File(measurement_file, "r") as f:
        header = h5py.h5o.get_info(f["wavelength"].id).addr
    damaged = tmp_path / "damaged.h5"
    data = bytearray(measurement_file.read_bytes())
    data[header] ^= 0xFF
    damaged.write_bytes(bytes(data))
    with pytest.raises(InputFileError, match=r"damaged\.h5: wavelength: cannot be read \(damaged"):
        read_measurement(damaged)


# ---- 6. memory ------------------------------------------------------------------------------------
def declared_frames_file(path, shape, upsample=None):
    """A tiny file that declares ``shape`` frames (chunked, nothing written: every value reads 1)."""
    with h5py.File(path, "w") as f:
        f.create_dataset("ptychogram", shape=shape, dtype="float32", chunks=(1, *(min(256, s) for s in shape[1:])),
                         fillvalue=1.0)
        f["encoder"] = np.zeros((shape[0], 2))
        f["wavelength"], f["dxd"], f["zled"], f["magnification"], f["NA"] = 532e-9, 6.5e-6, 80e-3, 4.0, 0.08
        if upsample is not None:
            f["upsample"] = upsample
    return path


@pytest.fixture
def fixed_memory(monkeypatch):
    monkeypatch.setattr(resources, "available_memory", lambda device=None: AVAILABLE)


def test_info_reads_only_the_shape_of_huge_declared_frames(tmp_path, capsys):
    path = declared_frames_file(tmp_path / "huge.h5", (49, 2048, 2048))
    assert path.stat().st_size < 100_000
    tracemalloc.start()
    try:
        assert main(["info", str(path)]) == 0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    out = capsys.readouterr().out
    assert "49 x 2048 x 2048 intensity, values not scanned" in out
    assert peak < 64 * 2**20, f"info allocated {peak / 2**20:.0f} MiB for frames it does not show"


def test_info_scans_small_frames_in_blocks(measurement_file, monkeypatch, capsys):
    """Frames within the scan limit are summarized block by block (here one frame per block)."""
    from ptycho_app.io import measurement

    monkeypatch.setattr(measurement, "SCAN_BYTES", 8 * 8 * 4)
    assert main(["info", str(measurement_file)]) == 0
    frames = read_measurement(measurement_file).frames
    out = capsys.readouterr().out
    assert f"values {frames.min():.4g} to {frames.max():.4g}" in out
    assert f"bright field:  9 frames (mean {frames.mean():.4g})" in out


def test_reconstruct_refuses_frames_beyond_memory(tmp_path, fixed_memory, capsys):
    path = declared_frames_file(tmp_path / "huge.h5", (1000, 4096, 4096))
    assert main(["reconstruct", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    line = one_line_error(capsys, "huge.h5")
    assert "ptychogram" in line and line.endswith("needs about 141 GiB, 21 GiB available")


def test_reconstruct_refuses_an_object_grid_beyond_memory(tmp_path, fixed_memory, capsys):
    path = declared_frames_file(tmp_path / "up.h5", (9, 16, 16), upsample=1000)
    assert main(["reconstruct", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    line = one_line_error(capsys, "up.h5")
    assert "16000 x 16000 object grid" in line and "GiB, 21 GiB available" in line


def test_rank_above_n_is_refused(measurement_file, tmp_path, capsys):
    assert main(["reconstruct", str(measurement_file), "--rank", "10000", "--out", str(tmp_path / "out"),
                 "--no-progress"]) == 2
    assert "--rank 10000 exceeds n = 256" in one_line_error(capsys, "meas.h5")


def test_simulate_refuses_a_huge_object(tmp_path, fixed_memory, capsys):
    assert main(["simulate", "--upsample", "1000", "--out", str(tmp_path / "sim.h5")]) == 2
    line = one_line_error(capsys, "16000 x 16000 object")
    assert "needs about" in line and not (tmp_path / "sim.h5").exists()


@pytest.mark.parametrize("argv", [["--n", "100000"], ["--problem", "sensing", "--n", "1000"]])
def test_sense_refuses_dense_matrices_beyond_memory(argv, tmp_path, fixed_memory, capsys):
    out = tmp_path / "sense"
    assert main(["sense", *argv, "--out", str(out), "--no-progress"]) == 2
    line = one_line_error(capsys, "--n")
    assert "needs about" in line and line.endswith("iB, 21 GiB available")
    assert not any(out.iterdir())


@pytest.mark.parametrize("error", [
    RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not enough memory: "
                 "you tried to allocate 80000000000 bytes."),
    MemoryError("Unable to allocate 74.5 GiB for an array with shape (100000, 100000) and data type float64"),
    pytest.param("cuda", id="torch.OutOfMemoryError")])
def test_allocation_failures_are_one_line(error, measurement_file, monkeypatch, capsys):
    import torch

    if error == "cuda":
        error = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    def fail(args):
        raise error

    monkeypatch.setitem(COMMANDS, "info", fail)
    assert main(["info", str(measurement_file)]) == 1
    line = one_line_error(capsys, "out of memory")
    assert "GiB" in line


def test_other_runtime_errors_are_not_called_memory(measurement_file, monkeypatch):
    def fail(args):
        raise RuntimeError("a bug")

    monkeypatch.setitem(COMMANDS, "info", fail)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["info", str(measurement_file)])


def test_divergence_is_not_taken_for_out_of_memory(measurement_file, monkeypatch, capsys):
    """SolverDivergedError is a RuntimeError too: it keeps its own message and exit code."""
    from ptycho_app.solvers import SolverDivergedError

    def fail(args):
        raise SolverDivergedError("loss is NaN at iteration 3", None)

    monkeypatch.setitem(COMMANDS, "info", fail)
    assert main(["info", str(measurement_file)]) == 1
    assert "solver diverged: loss is NaN" in one_line_error(capsys, "iteration 3")


def test_available_memory_without_psutil(monkeypatch):
    """The /proc/meminfo fallback agrees with psutil (within what other processes change)."""
    with_psutil = resources.available_memory()
    monkeypatch.setitem(sys.modules, "psutil", None)
    without = resources.available_memory()
    assert without > 0 and abs(without - with_psutil) < 0.2 * with_psutil + 2**28


# ---- 7. result files ------------------------------------------------------------------------------
BAD_RESULTS = {
    "empty eigenvalues": (dict(eigenvalues=np.zeros(0)), "eigenvalues: expected 2 values"),
    "empty loss": (dict(loss=np.zeros(0)), "loss: is empty"),
    "2-D loss": (dict(loss=np.ones((2, 2))), "loss: expected 1 axes"),
    "short d": (dict(d=np.ones(1)), "factors/d"),
    "object of another size": (dict(object=np.ones((8, 8), np.complex64)), "object: expected a square image"),
}


@pytest.mark.parametrize("case", BAD_RESULTS)
def test_bad_result_files_give_one_line_and_compare_writes_nothing(case, tmp_path, capsys):
    changes, expected = BAD_RESULTS[case]
    good = make_result(tmp_path / "meas.udu.h5")
    bad = make_result(tmp_path / "meas.bm.h5", **changes)
    assert main(["info", str(bad)]) == 2
    assert expected in one_line_error(capsys, "meas.bm.h5")
    out = tmp_path / "report"
    assert main(["compare", str(good), str(bad), "--out", str(out)]) == 2
    assert expected in one_line_error(capsys, "meas.bm.h5")
    assert not out.exists() or not any(out.iterdir())


def test_missing_result_dataset_is_named(result_file, capsys):
    with h5py.File(result_file, "r+") as f:
        del f["loss"]
    assert main(["info", str(result_file)]) == 2
    assert "loss: missing" in one_line_error(capsys, "meas.bm.h5")


def test_valid_result_still_reads(result_file):
    result = read_result(result_file)
    assert result.eigenvalues.shape == (2,) and result.object.shape == (16, 16)


# ---- 8. Ctrl-C during start-up ------------------------------------------------------------------
def entry_point_command():
    """The installed console script when there is one, else the same entry point through -c."""
    script = Path(sys.executable).parent / "ptycho-app"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from ptycho_app.cli import main; sys.exit(main())"]


def importing_torch(pid) -> bool:
    """Whether the process has started loading torch (its shared libraries are mapped)."""
    try:
        return "libtorch" in Path(f"/proc/{pid}/maps").read_text()  # torch's own library, not a path
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc to see when torch loads")
def test_ctrl_c_while_importing_torch_prints_no_traceback(tmp_path):
    process = subprocess.Popen([*entry_point_command(), "info", str(tmp_path / "missing.h5")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 60
    while not importing_torch(process.pid) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert "Traceback" not in err, err
    assert process.returncode == 130, err
    assert err.strip().splitlines() == ["ptycho-app: interrupted"], err


# ---- 9. FIFOs and other non-regular files ------------------------------------------------------------
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo")
def test_fifo_inputs_are_refused_at_once(tmp_path):
    fifo = tmp_path / "pipe.h5"
    os.mkfifo(fifo)
    mat = tmp_path / "pipe.mat"
    os.mkfifo(mat)
    commands = [["info", str(fifo)], ["reconstruct", str(fifo), "--out", str(tmp_path / "out"), "--no-progress"],
                ["compare", str(fifo), "--out", str(tmp_path / "report")],
                ["import", str(mat), "--frame-type", "intensity", "--na", "0.1", "--magnification", "4",
                 "--camera-pixel", "6.5e-6", "--out", str(tmp_path / "imported.h5")]]
    script = "import sys, json\nfrom ptycho_app.cli import main\nfor argv in json.loads(sys.argv[1]):\n" \
             "    print(main(argv), flush=True)\n"
    child = subprocess.run([sys.executable, "-c", script, json.dumps(commands)], capture_output=True, text=True,
                           timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})  # a hang fails here
    assert child.stdout.split() == ["2"] * len(commands), child.stderr
    lines = child.stderr.strip().splitlines()
    assert len(lines) == len(commands) and "Traceback" not in child.stderr, child.stderr
    for line, name in zip(lines, ["pipe.h5", "pipe.h5", "pipe.h5", "pipe.mat"], strict=True):
        assert name in line and ("FIFO" in line or "not a regular file" in line), line
