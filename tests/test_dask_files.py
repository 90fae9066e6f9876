"""``reconstruct FILES --scheduler`` (no ``--tile``): one Dask task per batched solve of files.

Three small simulated inputs (16 x 16 frames, 3 x 3 LEDs, different objects and noise) solved with
BM and UDU side by side, ``--batch-size 1`` (so three tasks), in double precision: every Dask run
must give the in-process run's result files (factors and object) to 1e-10.
"""

import os
import shutil

import numpy as np
import pytest

from ptycho_app.batch import STAGING_NAME
from ptycho_app.cli import main
from ptycho_app.io.results import read_result

distributed = pytest.importorskip("distributed")

STEMS = ("in1", "in2", "in3")
NAMES = sorted(f"{stem}.{method}.h5" for stem in STEMS for method in ("bm", "udu"))
SOLVE = ["--method", "both", "--batch-size", "1", "--iters", "100", "--precision", "double", "--no-progress"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """The three input files and the folder of the in-process results (the reference)."""
    folder = tmp_path_factory.mktemp("dask-files")
    paths = []
    for seed, (stem, image) in enumerate(zip(STEMS, ("camera", "moon", "coins"), strict=True), start=1):
        path = folder / f"{stem}.h5"
        assert main(["simulate", "--frame-size", "16", "--upsample", "2", "--leds", "3", "--amplitude-image", image,
                     "--noise", "poisson", "--photons", "1000", "--seed", str(seed), "--out", str(path)]) == 0
        paths.append(str(path))
    reference = folder / "in-process"
    assert main(["reconstruct", *paths, *SOLVE, "--out", str(reference)]) == 0
    return paths, reference


def relative(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def assert_same_results(out, reference, iterations=100):
    """Every result file of ``out`` has ``reference``'s factors and object (to 1e-10)."""
    assert sorted(p.name for p in out.glob("*.h5")) == NAMES
    assert not (out / STAGING_NAME).exists()
    for name in NAMES:
        got, want = read_result(out / name), read_result(reference / name)
        assert got.iterations == want.iterations == iterations
        assert relative(got.U, want.U) < 1e-10 and relative(got.object, want.object) < 1e-10
        assert np.allclose(got.loss, want.loss, rtol=1e-10, atol=0)


def test_local_cluster_matches_in_process(inputs, tmp_path):
    paths, reference = inputs
    objects = [read_result(reference / f"{stem}.bm.h5").object for stem in STEMS]
    assert min(relative(objects[0], other) for other in objects[1:]) > 0.1  # three different problems
    out = tmp_path / "dask"
    assert main(["reconstruct", *paths, *SOLVE, "--scheduler", "local", "--workers", "2", "--out", str(out)]) == 0
    assert_same_results(out, reference)


def test_a_worker_killed_after_staging_its_files_loses_nothing(inputs, tmp_path):
    """The worker solving ``in2`` dies once, right after writing its staged files and before returning:
    Dask runs the task again, which finds the files and returns at once; every file is written once."""
    from distributed.diagnostics.plugin import WorkerPlugin

    paths, reference = inputs
    marker, log = tmp_path / "killed", tmp_path / "writes.log"

    class KillOnce(WorkerPlugin):  # local: sent to the workers by value, set up again on a restarted worker
        def setup(self, worker):
            import ptycho_app.batch as batch

            original = batch.write_result

            def write_then_die(path, result):
                original(path, result)
                with open(log, "a") as handle:
                    handle.write(f"{path.name}\n")
                if path.name == "in2.udu.h5":  # the task's last file (BM problems first, then UDU)
                    try:
                        os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
                    except FileExistsError:
                        return
                    os._exit(1)

            batch.write_result = write_then_die

    out = tmp_path / "killed-run"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) \
            as cluster, distributed.Client(cluster) as client:
        client.register_plugin(KillOnce())
        assert main(["reconstruct", *paths, *SOLVE, "--scheduler", cluster.scheduler_address,
                     "--out", str(out)]) == 0
    assert marker.exists()  # a worker died holding a finished task
    assert sorted(log.read_text().split()) == NAMES  # each result computed and written once
    assert_same_results(out, reference)


def test_bad_scheduler_address(inputs, tmp_path, capsys):
    paths, _ = inputs
    out = tmp_path / "out"
    assert main(["reconstruct", *paths, *SOLVE, "--scheduler", "tcp://127.0.0.1:1", "--out", str(out)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--scheduler tcp://127.0.0.1:1" in lines[0] and "Traceback" not in lines[0]
    assert not list(out.glob("*.h5")) and not (out / STAGING_NAME).exists()


def test_resume_on_dask_equals_resume_in_process(inputs, tmp_path, capsys):
    paths, reference = inputs
    in_process, dask = tmp_path / "in-process", tmp_path / "dask"
    shutil.copytree(reference, in_process)
    shutil.copytree(reference, dask)
    more = [*SOLVE, "--iters", "40", "--resume"]
    assert main(["reconstruct", *paths, *more, "--out", str(in_process)]) == 0
    before = {name: (dask / name).read_bytes() for name in NAMES}
    capsys.readouterr()
    # an earlier result that does not fit is refused by the worker that reads it: one line naming it
    assert main(["reconstruct", *paths, *more, "--rank", "2", "--scheduler", "local", "--workers", "2",
                 "--out", str(dask)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and ".h5: factors/U: factors have shape" in lines[0] and "--rank" in lines[0]
    assert {name: (dask / name).read_bytes() for name in NAMES} == before  # nothing replaced
    assert main(["reconstruct", *paths, *more, "--scheduler", "local", "--workers", "2", "--out", str(dask)]) == 0
    assert_same_results(dask, in_process, iterations=140)


def test_resume_skip_finished_solves_only_what_a_run_left(inputs, tmp_path, capsys):
    """What an interrupted run of many inputs leaves: in1 finished, in2's results missing, in3's BM
    result marked interrupted.  ``--resume --skip-finished`` on Dask leaves in1's files untouched,
    solves in2 from the start and continues in3 (both methods, one batched solve)."""
    paths, reference = inputs
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    for name in ("in2.bm.h5", "in2.udu.h5"):
        (out / name).unlink()
    import h5py

    with h5py.File(out / "in3.bm.h5", "r+") as f:
        f.attrs["interrupted"] = True
    before = {name: (out / name).stat().st_mtime_ns for name in ("in1.bm.h5", "in1.udu.h5")}
    assert main(["reconstruct", *paths, *SOLVE, "--resume", "--skip-finished", "--scheduler", "local",
                 "--workers", "1", "--out", str(out)]) == 0
    assert {name: (out / name).stat().st_mtime_ns for name in before} == before  # in1 left alone
    for name in ("in2.bm.h5", "in2.udu.h5"):  # solved from the start: the reference's
        got, want = read_result(out / name), read_result(reference / name)
        assert got.iterations == 100 and relative(got.object, want.object) < 1e-10
    assert read_result(out / "in3.bm.h5").iterations == 200  # continued: 100 more
    assert read_result(out / "in3.udu.h5").iterations == 200  # an input not finished continues all its methods
    assert "skipped 1 finished input(s): in1.h5" in capsys.readouterr().out
    # another run's options: refused, naming the file and the flag
    assert main(["reconstruct", *paths, *SOLVE, "--rank", "2", "--skip-finished", "--out", str(out)]) == 2
    assert "--rank" in capsys.readouterr().err
