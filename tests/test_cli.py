"""The demo command, run in-process as a user would."""

import json

import numpy as np
import pytest

from ptycho_app.cli import get_parser, main


def test_demo_writes_figure_and_metrics(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--iters", "300", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "relative_error" in printed and "UDU" in printed
    png = (out / "comparison.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    metrics = json.loads((out / "metrics.json").read_text())
    for label in ("BM", "UDU"):
        assert metrics[label]["iterations"] == 300
        assert 0 < metrics[label]["relative_error"] < 1
        values = np.array(metrics[label]["eigenvalues"])
        assert np.all(np.diff(values) <= 0)
        # the shown object's rank-one X fits no better than the rank-r X it is the top part of
        assert metrics[label]["relative_residual_rank1"] >= 0.999 * metrics[label]["relative_residual"]
    # UDU's X is rank one (its surplus eigenvalues collapse), so both residuals agree; BM's tail adds to X's fit
    udu = metrics["UDU"]
    assert udu["relative_residual_rank1"] == pytest.approx(udu["relative_residual"], rel=0.5)
    assert not list(out.glob("*.part"))


@pytest.mark.parametrize("argv", [["demo", "--iters", "0"], ["demo", "--device", "tpu"],
                                  ["demo", "--rank", "-2"]])
def test_bad_options_exit_2_with_one_line(argv, capsys, tmp_path):
    assert main(argv + ["--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ptycho-app demo: error:")


def test_output_path_that_is_a_file_is_refused_before_solving(tmp_path, capsys):
    not_a_folder = tmp_path / "taken"
    not_a_folder.write_text("keep me")
    assert main(["demo", "--out", str(not_a_folder), "--iters", "5000", "--no-progress"]) == 2
    err = capsys.readouterr()
    assert "exists and is not a folder" in err.err and "relative_error" not in err.out
    assert not_a_folder.read_text() == "keep me"


def test_unknown_option_exits_2_with_one_line(capsys):
    assert main(["demo", "--methd", "xyz"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unrecognized arguments: --methd xyz" in err[0] and "--help" in err[0]
    assert main(["demo", "--method", "xyz"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "invalid choice: 'xyz'" in err[0]


def test_parser_documents_groups():
    commands = get_parser()._subparsers._group_actions[0].choices
    assert set(commands) == {"simulate", "import", "reconstruct", "compare", "info", "sense", "demo",
                             "udv-demo"}
    help_text = commands["reconstruct"].format_help()
    assert "--precision" in help_text and "batching" in help_text and "--resume" in help_text


def test_solver_flags_come_from_the_options_dataclass():
    """Every SolverOptions field (but method and yield_every) is a flag of reconstruct, demo and sense, with
    the dataclass's help text and choices, and the presets' defaults in the help."""
    from ptycho_app.solvers.options import fields_by_name

    commands = get_parser()._subparsers._group_actions[0].choices
    for command in ("reconstruct", "demo", "sense"):
        actions = {a.dest: a for a in commands[command]._actions}
        for name, f in fields_by_name().items():
            if name in ("method", "yield_every"):
                continue
            action = actions[name]
            assert action.help.startswith(f.metadata["help"]) and action.default is None
            assert tuple(action.choices or ()) == tuple(f.metadata.get("choices", ()))
        shown = "(default: intensity)" if command == "sense" else "paper intensity, fast amplitude"
        assert shown in actions["loss"].help
        assert actions["preset"].default == ("paper" if command == "sense" else "fast")
