"""No lost files (issue 10, items 1-4): outputs never replace inputs or earlier results, one writer per
output, Ctrl-C messages that match the files on disk, and full disks without crashes or left-overs."""

import csv
import errno
import fcntl
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.io

import ptycho_app.batch
import ptycho_app.io.atomic as atomic
import ptycho_app.session
from ptycho_app.cli import main
from ptycho_app.io.atomic import lock_path, output_lock, remove_stale, sigint_deferred
from ptycho_app.io.results import read_result

SMALL = ["--frame-size", "16", "--upsample", "2", "--leds", "5"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
WRITE_BYTES = Path.write_bytes


def simulate(path, *extra):
    assert main(["simulate", "--out", str(path), *SMALL, *extra]) == 0
    return path


def reconstruct(*argv):
    return main(["reconstruct", "--no-progress", *map(str, argv)])


def digest(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


#: Periodic progress records (logging), which are not messages.
PROGRESS = re.compile(r"ptycho-app: (progress )?\d{4}-\d\d-\d\d ")


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if not PROGRESS.match(line)]


def one_line(capsys) -> str:
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1, lines
    return lines[0]


def cli(*argv, check_rc=None, **kwargs) -> subprocess.CompletedProcess:
    """The command line in another process (its own locks, signals and exit status)."""
    done = subprocess.run([sys.executable, "-m", "ptycho_app.cli", *map(str, argv)], capture_output=True, text=True,
                          env=ENV, timeout=300, **kwargs)
    if check_rc is not None:
        assert done.returncode == check_rc, done.stderr
    return done


def leftovers(folder) -> list[str]:
    return sorted(p.name for p in Path(folder).iterdir() if p.name.endswith((".part", ".lock")))


@pytest.fixture
def measurement(tmp_path):
    return simulate(tmp_path / "a.h5")


@pytest.fixture
def matlab_file(tmp_path):
    """A small MATLAB stack (M, M, L) and its illumination table."""
    kx = np.array([0.0, 0.05, -0.05, 0.0, 0.0])
    ky = np.array([0.0, 0.0, 0.0, 0.05, -0.05])
    stack = np.random.default_rng(0).uniform(0.5, 2.0, size=(16, 16, len(kx))).astype(np.float32)
    mat = tmp_path / "stack.mat"
    scipy.io.savemat(mat, {"imlow_HDR": stack, "wlength": 500e-9})
    table = tmp_path / "leds.csv"
    with open(table, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("frame", "kx_na", "ky_na"))
        writer.writerows((j, kx[j], ky[j]) for j in range(len(kx)))
    return mat, table


def import_args(mat, table, out, *extra):
    return ["import", str(mat), "--illumination", str(table), "--frame-type", "intensity", "--na", "0.1",
            "--magnification", "4", "--pixel-size", "1e-6", "--out", str(out), *extra]


# ---- 1. an output is never an input -------------------------------------------------------------
def test_import_refuses_to_write_over_its_inputs(matlab_file, capsys):
    mat, table = matlab_file
    before = digest(mat), digest(table)
    for target in (mat, table):
        assert main(import_args(mat, table, target, "--overwrite")) == 2
        line = one_line(capsys)
        assert f"the output {target} is the input file {target}" in line
    (mat.parent / "linked.h5").symlink_to(mat)
    assert main(import_args(mat, table, mat.parent / "linked.h5", "--overwrite")) == 2
    assert f"linked.h5 is the input file {mat}" in one_line(capsys)
    assert (digest(mat), digest(table)) == before
    assert main(import_args(mat, table, mat.parent / "stack.h5")) == 0


def test_simulate_refuses_to_write_over_its_geometry_and_object(measurement, tmp_path, capsys):
    before = digest(measurement)
    os.link(measurement, tmp_path / "hard.h5")
    (tmp_path / "soft.h5").symlink_to(measurement)
    for out in (measurement, tmp_path / "hard.h5", tmp_path / "soft.h5"):
        assert main(["simulate", "--geometry", str(measurement), "--out", str(out), "--overwrite"]) == 2
        line = one_line(capsys)
        assert f"the output {out} is the input file {measurement}" in line and "refusing" in line
    obj = tmp_path / "object.npy"
    np.save(obj, np.ones((32, 32), np.complex64))
    before_object = digest(obj)
    assert main(["simulate", "--object", str(obj), "--out", str(obj), *SMALL, "--overwrite"]) == 2
    assert "is the input file" in one_line(capsys)
    assert digest(measurement) == before and digest(obj) == before_object


def test_reconstruct_refuses_a_result_path_that_is_an_input(measurement, tmp_path, capsys):
    # an input named like another input's result, and a result path linked to an input
    clash = tmp_path / "a.bm.h5"
    shutil.copy(measurement, clash)
    before = digest(clash)
    assert reconstruct(measurement, clash, "--method", "bm", "--iters", "3", "--out", tmp_path, "--overwrite") == 2
    assert f"the output {clash} is the input file {clash}" in one_line(capsys)
    out = tmp_path / "r"
    out.mkdir()
    (out / "a.udu.h5").symlink_to(measurement)
    assert reconstruct(measurement, "--method", "udu", "--iters", "3", "--out", out, "--overwrite") == 2
    assert f"is the input file {measurement}" in one_line(capsys)
    assert digest(clash) == before and (out / "a.udu.h5").is_symlink()


def test_compare_refuses_to_write_over_a_result(measurement, tmp_path, capsys):
    out = tmp_path / "r"
    assert reconstruct(measurement, "--method", "bm", "--iters", "3", "--out", out) == 0
    capsys.readouterr()
    result = out / "a.bm.h5"
    before = digest(result)
    (out / "a.comparison.png").symlink_to(result)
    assert main(["compare", str(result)]) == 2
    assert f"the output {out / 'a.comparison.png'} is the input file {result}" in one_line(capsys)
    assert digest(result) == before


# ---- 2. no silent overwrites; one writer per output -------------------------------------------------
def test_simulate_and_import_refuse_an_existing_output(measurement, matlab_file, capsys):
    before = digest(measurement)
    assert main(["simulate", "--out", str(measurement), *SMALL, "--amplitude-image", "moon"]) == 2
    line = one_line(capsys)
    assert line == f"ptycho-app simulate: error: {measurement} already exists; pass --overwrite to replace it"
    assert digest(measurement) == before
    simulate(measurement, "--amplitude-image", "moon", "--overwrite")
    assert digest(measurement) != before

    mat, table = matlab_file
    target = mat.parent / "imported.h5"
    assert main(import_args(mat, table, target)) == 0
    capsys.readouterr()
    before = digest(target)
    assert main(import_args(mat, table, target)) == 2
    assert f"{target} already exists; pass --overwrite" in one_line(capsys)
    assert digest(target) == before
    assert main(import_args(mat, table, target, "--overwrite")) == 0


def test_reconstruct_refuses_to_replace_results_without_resume_or_overwrite(measurement, tmp_path, capsys):
    out = tmp_path / "r"
    assert reconstruct(measurement, "--method", "bm", "--iters", "30", "--out", out) == 0
    capsys.readouterr()
    result = out / "a.bm.h5"
    before = digest(result)
    assert reconstruct(measurement, "--method", "bm", "--iters", "5", "--out", out) == 2
    line = one_line(capsys)
    assert str(result) in line and "pass --resume to continue it or --overwrite to replace it" in line
    assert digest(result) == before
    assert reconstruct(measurement, "--method", "bm", "--iters", "5", "--out", out, "--resume", "--overwrite") == 2
    assert "not both" in one_line(capsys)
    assert reconstruct(measurement, "--method", "bm", "--iters", "5", "--out", out, "--resume") == 0
    assert read_result(result).iterations == 35
    assert reconstruct(measurement, "--method", "bm", "--iters", "5", "--out", out, "--overwrite") == 0
    assert read_result(result).iterations == 5
    assert leftovers(out) == []


def lock_holder(target) -> subprocess.Popen:
    """Another process holding ``target``'s output lock for a minute; it prints ``locked`` once it has it."""
    return subprocess.Popen([sys.executable, "-c", "import sys, time\n"
                             "from ptycho_app.io.atomic import output_lock\n"
                             "with output_lock(sys.argv[1]):\n    print('locked', flush=True); time.sleep(60)",
                             str(target)], stdout=subprocess.PIPE, text=True, env=ENV)


def test_a_second_process_is_refused_while_an_output_is_locked(measurement, tmp_path):
    with output_lock(measurement):
        assert lock_path(measurement).read_text().strip() == str(os.getpid())
        done = cli("simulate", "--out", measurement, *SMALL, "--overwrite", check_rc=2)
    assert done.stderr.strip() == (f"ptycho-app simulate: error: {measurement} is being written by another "
                                   f"ptycho-app process (pid {os.getpid()})")
    assert not lock_path(measurement).exists()  # released with the block


def test_a_running_reconstruction_locks_its_results_until_it_ends(measurement, tmp_path, capsys):
    out = tmp_path / "r"
    out.mkdir()
    holder = lock_holder(out / "a.udu.h5")
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert reconstruct(measurement, "--method", "udu", "--iters", "5", "--out", out, "--resume") == 2
        assert one_line(capsys) == (f"ptycho-app reconstruct: error: {out / 'a.udu.h5'} is being written by another "
                                    f"ptycho-app process (pid {holder.pid})")
        assert not (out / "a.udu.h5").exists()
    finally:
        holder.kill()  # kill -9: the operating system lets the lock go
        holder.wait()
    assert (out / ".a.udu.h5.lock").exists()  # left by the killed process
    assert reconstruct(measurement, "--method", "udu", "--iters", "5", "--out", out, "--resume") == 0
    assert read_result(out / "a.udu.h5").iterations == 5 and leftovers(out) == []


# ---- 3. Ctrl-C says what was written ------------------------------------------------------------------
def files_named(part: str) -> list[Path]:
    return [Path(name) for name in part.split(", ")] if part else []


def check_interrupt_message(line: str, out: Path, planned: set[Path]):
    """The message lists every planned file once, as written or not written, as the disk has them."""
    match = re.fullmatch(r"ptycho-app reconstruct: interrupted: (?:wrote (?P<wrote>[^;(]+?)|nothing written)"
                         r"(?:; not written: (?P<missing>[^;(]+?))?(?:; a second Ctrl-C waited until (?P<held>\S+) "
                         r"was complete)?(?: \(continue with --resume(?: --skip-finished)?\))?", line)
    assert match, line
    written, missing = files_named(match["wrote"] or ""), files_named(match["missing"] or "")
    assert set(written) | set(missing) == planned and not set(written) & set(missing)
    for path in written:
        assert read_result(path).attrs["interrupted"]
    assert not any(path.exists() for path in missing)
    assert match["held"] is None or Path(match["held"]) in written
    assert leftovers(out) == []
    return written, missing


@pytest.mark.parametrize("gap", [0.05, 0.01, 0.0])
def test_two_ctrl_c_50_ms_apart_get_a_true_message(measurement, tmp_path, gap):
    out = tmp_path / "r"
    process = subprocess.Popen([sys.executable, "-m", "ptycho_app.cli", "reconstruct", str(measurement), "--method",
                                "both", "--iters", "1000000", "--out", str(out)], stderr=subprocess.PIPE, env=ENV)
    fcntl.fcntl(process.stderr, fcntl.F_SETFL, os.O_NONBLOCK)
    seen, deadline = b"", time.monotonic() + 120
    while not re.search(rb"\| *[1-9]\d*/\d+ \[", seen):  # the progress bar has counted iterations
        assert time.monotonic() < deadline and process.poll() is None, seen
        seen += process.stderr.read() or b""
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    time.sleep(gap)
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    process.wait(120)
    fcntl.fcntl(process.stderr, fcntl.F_SETFL, 0)
    seen += process.stderr.read()
    # 130, or killed by the second SIGINT once the message is out (the interpreter was shutting down)
    assert process.returncode in (130, -signal.SIGINT)
    lines = [line for line in seen.decode().replace("\r", "\n").splitlines() if "interrupted" in line]
    assert len(lines) == 1 and "Traceback" not in seen.decode()
    line = lines[0][lines[0].index("ptycho-app reconstruct:"):]
    check_interrupt_message(line, out, {out / "a.bm.h5", out / "a.udu.h5"})


def stop_after(iterations):
    """``session.iterate`` that is interrupted (a first Ctrl-C) after ``iterations``."""
    real_iterate = ptycho_app.session.iterate

    def interrupted_iterate(*args, **kwargs):
        for state in real_iterate(*args, **kwargs):
            yield state
            if state.iteration >= iterations:
                raise KeyboardInterrupt

    return interrupted_iterate


def test_a_second_ctrl_c_during_a_write_waits_for_it(measurement, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(ptycho_app.session, "iterate", stop_after(20))
    real_write = ptycho_app.batch.write_result

    def write_with_ctrl_c(path, result):
        os.kill(os.getpid(), signal.SIGINT)  # the second Ctrl-C, in the middle of the first file's write
        time.sleep(0.05)
        real_write(path, result)

    monkeypatch.setattr(ptycho_app.batch, "write_result", write_with_ctrl_c)
    out = tmp_path / "r"
    assert reconstruct(measurement, "--method", "both", "--iters", "100", "--out", out) == 130
    line = one_line(capsys)
    assert line == (f"ptycho-app reconstruct: interrupted: wrote {out / 'a.bm.h5'}; not written: {out / 'a.udu.h5'}; "
                    f"a second Ctrl-C waited until {out / 'a.bm.h5'} was complete (continue with --resume)")
    assert read_result(out / "a.bm.h5").iterations == 20 and not (out / "a.udu.h5").exists()
    check_interrupt_message(line, out, {out / "a.bm.h5", out / "a.udu.h5"})


def test_a_second_ctrl_c_before_any_write_says_nothing_was_written(measurement, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(ptycho_app.session, "iterate", stop_after(20))

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ptycho_app.batch, "results_from_state", interrupted)
    out = tmp_path / "r"
    assert reconstruct(measurement, "--method", "both", "--iters", "100", "--out", out) == 130
    line = one_line(capsys)
    assert line == (f"ptycho-app reconstruct: interrupted: nothing written; not written: {out / 'a.bm.h5'}, "
                    f"{out / 'a.udu.h5'}")
    assert not list(out.glob("*.h5"))


def test_ctrl_c_in_a_later_solve_names_the_earlier_solves_files(tmp_path, monkeypatch, capsys):
    a = simulate(tmp_path / "a.h5")
    d = simulate(tmp_path / "d.h5", "--leds", "3")  # another acquisition: a second solve
    real_iterate = ptycho_app.session.iterate
    solves = []

    def second_solve_interrupted(*args, **kwargs):
        solves.append(1)
        if len(solves) == 2:
            raise KeyboardInterrupt
        yield from real_iterate(*args, **kwargs)

    monkeypatch.setattr(ptycho_app.session, "iterate", second_solve_interrupted)
    out = tmp_path / "r"
    assert reconstruct(a, d, "--method", "bm", "--iters", "5", "--out", out) == 130
    assert one_line(capsys) == (f"ptycho-app reconstruct: interrupted: wrote {out / 'a.bm.h5'}; not written: "
                                f"{out / 'd.bm.h5'} (continue with --resume --skip-finished)")


def test_sigint_deferred_holds_ctrl_c_until_the_block_ends():
    with pytest.raises(KeyboardInterrupt), sigint_deferred() as held:
        with sigint_deferred() as inner:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            finished_inner = True
        assert finished_inner and inner and held  # the inner block passed it outwards
        finished = True
    assert finished
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# ---- 4. full disks and left-overs --------------------------------------------------------------------
def no_space_after(limit):
    """``Path.write_bytes`` that fails like a full disk after ``limit`` output files."""
    calls = []

    def write_bytes(self, data):
        if self.name.endswith(".part"):
            calls.append(self)
        if self.name.endswith(".part") and len(calls) > limit:
            with open(self, "wb") as handle:
                handle.write(data[:100])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return WRITE_BYTES(self, data)

    return write_bytes


def test_enospc_is_one_line_and_leaves_no_temporary_file(measurement, tmp_path, monkeypatch, capsys):
    before = digest(measurement)
    monkeypatch.setattr(Path, "write_bytes", no_space_after(0))
    assert main(["simulate", "--out", str(measurement), *SMALL, "--overwrite", "--amplitude-image", "moon"]) == 2
    assert one_line(capsys) == (f"ptycho-app simulate: error: {measurement}: no space left on the device; a.h5 was "
                                "not written (its temporary file was removed)")
    assert digest(measurement) == before and leftovers(tmp_path) == []

    monkeypatch.setattr(Path, "write_bytes", no_space_after(1))  # BM fits, UDU does not
    out = tmp_path / "r"
    assert reconstruct(measurement, "--method", "both", "--iters", "5", "--out", out) == 2
    assert one_line(capsys) == (f"ptycho-app reconstruct: error: {out / 'a.udu.h5'}: no space left on the device; "
                                f"a.udu.h5 was not written (its temporary file was removed) (written before it: "
                                f"{out / 'a.bm.h5'})")
    assert read_result(out / "a.bm.h5").iterations == 5 and not (out / "a.udu.h5").exists()
    assert leftovers(out) == []


def test_too_little_free_space_is_refused_before_solving(measurement, tmp_path, monkeypatch, capsys):
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=1000))
    solved = []
    monkeypatch.setattr(ptycho_app.batch, "run_to_end", lambda *args, **kwargs: solved.append(1))
    out = tmp_path / "r"
    assert reconstruct(measurement, "--method", "both", "--iters", "5", "--out", out) == 2
    line = one_line(capsys)
    assert re.fullmatch(rf"ptycho-app reconstruct: error: {out} \(2 result files\): needs about "
                        r"[\d.]+ (KiB|bytes) but only 1000 bytes is free on that disk; free some space or choose "
                        r"another output folder", line)
    assert not solved and not list(out.iterdir())
    assert main(["simulate", "--out", str(tmp_path / "b.h5"), *SMALL]) == 2
    assert re.search(r"b\.h5: needs about [\d.]+ (KiB|bytes) but only 1000 bytes is free", one_line(capsys))


def test_stale_temporary_files_are_removed_unless_in_use(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    holder = lock_holder(folder / "b.h5")
    try:
        assert holder.stdout.readline().strip() == "locked"  # a running process writes b.h5
        stale_part, stale_lock = folder / ".a.h5.k3j_x9q2.part", folder / ".c.h5.lock"
        busy_part, new_part = folder / ".b.h5.zz81ab_c.part", folder / ".d.h5.newnew12.part"
        for path in (stale_part, busy_part, new_part):
            path.write_bytes(b"left by kill -9")
        stale_lock.write_bytes(b"12345\n")  # what a killed ptycho-app leaves: its pid
        # other programs' hidden files of the same endings are not ours to remove
        foreign_lock, foreign_part = folder / ".notes.lock", folder / ".draft.part"
        foreign_lock.write_bytes(b"editor session")
        foreign_part.write_bytes(b"someone else's")
        old = atomic.PROCESS_START - 3600
        for path in (stale_part, stale_lock, busy_part, folder / ".b.h5.lock", foreign_lock, foreign_part):
            os.utime(path, (old, old))
        remove_stale(folder)
        assert leftovers(folder) == sorted([busy_part.name, ".b.h5.lock", new_part.name, foreign_lock.name,
                                            foreign_part.name])
    finally:
        holder.kill()
        holder.wait()


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 1 MiB tmpfs (needs root and mount(8); skipped otherwise)."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("a full disk is made with a 1 MiB tmpfs, which needs root and mount(8)")
    folder = tmp_path / "tmpfs"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        if not os.path.ismount(folder) or shutil.disk_usage(folder).total > 2**21:
            pytest.skip("the tmpfs did not mount as asked")
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def fill(folder, leave):
    """Fill ``folder``'s disk up to ``leave`` bytes free."""
    with open(folder / "filler", "wb") as handle:
        handle.write(b"\0" * (shutil.disk_usage(folder).free - leave))


def test_a_full_tmpfs_gives_one_line_errors_and_no_crash(measurement, small_tmpfs):
    fill(small_tmpfs, 16 * 1024)
    target = small_tmpfs / "s.h5"
    done = cli("simulate", "--out", target, *SMALL, check_rc=2)  # it crashed with rc 139
    assert re.fullmatch(rf"ptycho-app simulate: error: {target}: needs about [\d.]+ KiB but only [\d.]+ KiB is free "
                        r"on that disk; free some space or choose another output folder\n", done.stderr)
    # the write itself failing (no free-space check): HDF5 never holds the file, so no crash either
    unchecked = ("import sys, ptycho_app.io.atomic as a\na.check_free_space = lambda *args: None\n"
                 "from ptycho_app.cli import main\nsys.exit(main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", unchecked, "simulate", "--out", str(target), *SMALL],
                          capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == 2, done.stderr
    assert done.stderr == (f"ptycho-app simulate: error: {target}: no space left on the device; s.h5 was not "
                           "written (its temporary file was removed)\n")
    assert not target.exists() and leftovers(small_tmpfs) == []

    (small_tmpfs / "filler").unlink()
    fill(small_tmpfs, 120 * 1024)  # room for one result file of this size, not two
    out = small_tmpfs / "r"
    done = cli("reconstruct", measurement, "--method", "both", "--iters", "5", "--no-progress", "--out", out)
    assert done.returncode == 2
    lines = error_lines(done.stderr)
    assert len(lines) == 1 and "a.udu.h5" in lines[0] and "free" in lines[0], done.stderr
    assert (f"(written before it: {out / 'a.bm.h5'})" in lines[0]) == (out / "a.bm.h5").exists()
    assert not (out / "a.udu.h5").exists() and leftovers(out) == []

