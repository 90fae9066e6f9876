"""``reconstruct --tile --scheduler``: Dask workers, the tile store, faults, ``--resume`` and refusals.

One small full-field simulation (64 x 64 camera pixels, 5 x 5 LEDs 60 mm below, 32-pixel tiles with
8-pixel overlaps: 9 tiles, each its own batched solve since the sub-pixel windows differ) solved
with BM at rank 1; every run here must give the in-process run's stitched object.
"""

import os

import h5py
import numpy as np
import pytest

from ptycho_app.cli import main
from ptycho_app.io.measurement import read_measurement
from ptycho_app.io.results import read_result
from ptycho_app.session import RunOptions
from ptycho_app.tile_store import TileStore, store_folder
from ptycho_app.tiled import check_tiling, cut_tiles, reconstruct_files_tiled, solve_and_store
from ptycho_app.tiling import TILE_MARGIN

from .test_tiled import simulate_small_field

distributed = pytest.importorskip("distributed")

TILES = 9
# double precision: a float32 solve's last digits depend on the torch thread count, which differs between
# this process and a 1-thread worker (measured 2.8e-5 relative after 60 iterations with the masked margin)
SOLVE = ["--tile", "32", "--overlap", "8", "--method", "bm", "--rank", "1", "--iters", "60", "--precision", "double",
         "--no-progress"]


@pytest.fixture(scope="module")
def field(tmp_path_factory):
    """The measurement file and the in-process result's object (the reference for every other run)."""
    folder = tmp_path_factory.mktemp("dask")
    path = folder / "field.h5"
    simulate_small_field(path)
    out = folder / "none"
    assert main(["reconstruct", str(path), *SOLVE, "--out", str(out), "--keep-tiles"]) == 0
    store = TileStore(store_folder(out, path))
    assert sorted(store.executions()) == [(k,) for k in range(TILES)]  # one task per tile, each run once
    return path, read_result(out / "field.bm.h5").object


def solve(path, out, **kwargs):
    """``reconstruct_files_tiled`` with :data:`SOLVE`'s options; the stitched object."""
    reconstruct_files_tiled([path], 32, 8, run=RunOptions(method="bm", precision="double"), out_dir=out,
                            progress=False, rank=1,
                            max_iters=60, **kwargs)
    return read_result(out / "field.bm.h5").object


def relative(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def test_local_cluster_matches_in_process_and_survives_a_killed_worker(field, tmp_path):
    path, reference = field

    def kill_after_solving(marker):  # nested: Dask sends it to the workers by value
        """Make this worker's next batched solve, once the store has a finished tile, end its process
        (``os._exit``) after solving and before storing: the solve is lost mid-task.  ``marker`` is
        created by the one solve that dies (the fault happens once on the whole cluster) and holds
        its tile indices."""
        import ptycho_app.tiled as tiled

        original = tiled.solve_tiles

        def solve_then_die(chunk, methods, run, base_seed, overrides, item, stop=None):
            solutions = original(chunk, methods, run, base_seed, overrides, item, stop)
            folder = store_folder(marker.parent / "killed-run", item.path)
            if any(folder.glob("tile-*.npz")):
                try:
                    fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
                except FileExistsError:
                    return solutions
                os.write(fd, " ".join(str(t.index) for t in chunk).encode())
                os.close(fd)
                os._exit(1)
            return solutions

        tiled.solve_tiles = solve_then_die

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) \
            as cluster, distributed.Client(cluster) as client:
        address = cluster.scheduler_address
        assert relative(solve(path, tmp_path / "dask", scheduler=address), reference) < 1e-6
        assert not store_folder(tmp_path / "dask", path).exists()  # removed once the result is written

        marker = tmp_path / "killed"
        client.run(kill_after_solving, marker)
        out = tmp_path / "killed-run"
        assert relative(solve(path, out, scheduler=address, keep_tiles=True), reference) < 1e-6
    assert marker.exists()  # a worker died holding a solved task
    killed = tuple(int(k) for k in marker.read_text().split())
    executions = TileStore(store_folder(out, path)).executions()
    assert killed in executions
    assert sorted(executions) == [(k,) for k in range(TILES)]  # every task stored once: none finished was rerun


def test_a_finished_task_run_again_returns_at_once(field, tmp_path):
    """What Dask's rerun of a task whose worker died holding its (unreleased) result does."""
    path, _ = field
    out = tmp_path / "out"
    solve(path, out, keep_tiles=True)
    store = TileStore(store_folder(out, path))
    measurement = read_measurement(path)
    tiles = cut_tiles(measurement, check_tiling(measurement, path, 32, 8), 32, TILE_MARGIN)
    mtime = store.tile_file(4).stat().st_mtime_ns
    task = ([tiles[4]], ("bm",), RunOptions(method="bm", precision="double"), 0, {"rank": 1, "max_iters": 60},
            str(path), str(store.folder))
    assert solve_and_store(*task) == ([4], False)
    assert len(store.executions()) == TILES and store.tile_file(4).stat().st_mtime_ns == mtime
    before = store.read_tile(4, ("bm",))["bm"]["object"]
    store.tile_file(4).unlink()
    assert solve_and_store(*task) == ([4], True) and store.executions()[-1] == (4,)
    assert relative(store.read_tile(4, ("bm",))["bm"]["object"], before) < 1e-6  # the same solve again


def test_ctrl_c_then_resume_solves_only_the_missing_tiles(field, tmp_path, monkeypatch, capsys):
    path, reference = field
    import ptycho_app.tiled as tiled

    original, calls = tiled.solve_tiles, []

    def interrupted_at_the_fourth(chunk, *args):
        calls.append(chunk[0].index)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return original(chunk, *args)

    monkeypatch.setattr(tiled, "solve_tiles", interrupted_at_the_fourth)
    out = tmp_path / "out"
    assert main(["reconstruct", str(path), *SOLVE, "--out", str(out)]) == 130
    message = capsys.readouterr().err.strip().splitlines()[-1]
    store = TileStore(store_folder(out, path))
    assert f"{store.folder} (3 of {TILES} tiles)" in message and "continue with --resume" in message
    assert store.executions() == [(0,), (1,), (2,)] and not (out / "field.bm.h5").exists()

    monkeypatch.setattr(tiled, "solve_tiles", original)
    (store.tile_file(1)).unlink()  # a tile lost too: its task runs again
    assert main(["reconstruct", str(path), *SOLVE, "--out", str(out), "--resume", "--keep-tiles"]) == 0
    assert store.executions()[3:] == [(k,) for k in (1, 3, 4, 5, 6, 7, 8)]
    assert relative(read_result(out / "field.bm.h5").object, reference) < 1e-6


def test_stale_store_is_refused(field, tmp_path, capsys):
    path, _ = field
    out = tmp_path / "out"
    assert main(["reconstruct", str(path), *SOLVE, "--out", str(out), "--keep-tiles"]) == 0
    (out / "field.bm.h5").unlink()  # as if interrupted while stitching
    folder = store_folder(out, path)
    capsys.readouterr()

    def refusal(argv, *named):
        assert main(argv) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and str(folder) in lines[0]
        for text in named:
            assert text in lines[0]

    refusal(["reconstruct", str(path), *SOLVE, "--out", str(out)], "--resume", "--overwrite")
    refusal(["reconstruct", str(path), *SOLVE, "--iters", "61", "--out", str(out), "--resume"], "--iters 60",
            "has 61")
    refusal(["reconstruct", str(path), *SOLVE, "--batch-size", "8", "--out", str(out), "--resume"], "--batch-size")
    other = tmp_path / "field.h5"  # same name, other contents
    other.write_bytes(path.read_bytes())
    with h5py.File(other, "a") as f:
        f.attrs["note"] = "another acquisition"
    refusal(["reconstruct", str(other), *SOLVE, "--out", str(out), "--resume"], "sha256")
    assert not (out / "field.bm.h5").exists()


def test_bad_scheduler_address(field, tmp_path, capsys):
    path, _ = field
    out = tmp_path / "out"
    assert main(["reconstruct", str(path), *SOLVE, "--scheduler", "tcp://127.0.0.1:1", "--out", str(out)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--scheduler tcp://127.0.0.1:1" in lines[0] and "Traceback" not in lines[0]
    assert not list(out.glob("*.h5")) and not store_folder(out, path).exists()
