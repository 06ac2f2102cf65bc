"""The ``pilotq-mpi`` command line as a user meets it (no MPI job is launched: ``launch`` is replaced, and the exit-code tests run ``sh``)."""
from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

import pytest

import pilotq_mpi
from pilotq_mpi import cli

ROOT = Path(__file__).resolve().parents[2]


def fails(capsys, argv):
    """Run ``pilotq-mpi argv`` expecting an argparse error; its stderr."""
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    return err


@pytest.fixture
def launched(monkeypatch):
    """Record what ``pilotq-mpi run/demo`` would start instead of starting it."""
    calls = []

    def fake_launch(app, app_args, args):
        calls.append((app, list(app_args), args))
        return 0

    monkeypatch.setattr(cli, "launch", fake_launch)
    return calls


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == (
        f"pilotq-mpi {pilotq_mpi.__version__} (Python {platform.python_version()}, {sys.executable})\n")


def test_missing_driver_names_only_the_driver(capsys):
    err = fails(capsys, ["run"])
    assert err.startswith("usage: pilotq-mpi run ")
    assert err.endswith("pilotq-mpi run: error: the following arguments are required: app\n")


@pytest.mark.parametrize("argv, usage", [
    (["run", "app.py", "-n", "two"], "usage: pilotq-mpi run "),
    (["report", "run.jsonl", "--bogus"], "usage: pilotq-mpi report "),
    (["demo", "--bogus"], "usage: pilotq-mpi demo "),
])
def test_a_subcommand_error_prints_that_subcommands_usage(capsys, argv, usage):
    err = fails(capsys, argv)
    assert err.startswith(usage), err
    assert f"pilotq-mpi {argv[0]}: error: " in err


def test_driver_arguments_after_options_hint_at_double_dash(capsys, tmp_path, launched):
    (tmp_path / "app.py").write_text("")
    app = str(tmp_path / "app.py")
    err = fails(capsys, ["run", app, "-n", "4", "extra", "--flag"])
    assert err.startswith("usage: pilotq-mpi run ")
    assert err.endswith("pilotq-mpi run: error: unrecognized arguments: extra --flag\n"
                        f"  arguments for the driver go after `--`: pilotq-mpi run {app} [options] -- extra --flag\n")
    assert launched == []
    # what the hint says works
    assert cli.main(["run", app, "-n", "4", "--", "extra", "--flag"]) == 0
    (_, app_args, args), = launched
    assert app_args == ["extra", "--flag"] and args.ranks == 4


def test_demo_forwards_what_follows_double_dash(launched, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("pilotq_mpi.report.run_report", lambda args: 0)
    assert cli.main(["demo", "--quick", "--", "--shots", "500"]) == 0
    (_, app_args, _), = launched
    assert app_args == ["--quick", "--shots", "500"]


@pytest.mark.parametrize("content", [b"\x7fELF\x02\x01\x01\x00\x00\x00", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
                                     "caf\xe9 latin-1, not UTF-8\n".encode("latin-1")])
def test_report_on_a_binary_file_says_so_in_one_line(capsys, tmp_path, content):
    path = tmp_path / "run.png"
    path.write_bytes(content * 100)
    assert cli.main(["report", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (f"pilotq-mpi report: {path} is a binary file, not a pilotq trace (a trace is the JSON-lines"
                   " file written by --trace or PILOTQ_TRACE)\n")


def test_report_on_a_text_file_keeps_the_trace_readers_message(capsys, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello\n")
    assert cli.main(["report", str(path)]) == 1
    assert capsys.readouterr().err == (f"pilotq-mpi report: {path} is not a pilotq trace: line 1 is not JSON"
                                       " (Expecting value): 'hello'\n")


def test_demo_writes_only_into_one_ignored_output_folder_and_says_where(launched, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    reported = []
    monkeypatch.setattr("pilotq_mpi.report.run_report", lambda args: reported.append(args.trace) or 0)
    assert cli.main(["demo", "--quick"]) == 0
    (_, _, args), = launched
    trace = Path(args.trace)
    assert trace.name == "trace.jsonl" and trace.parent.parent == cli.OUTPUT_ROOT
    assert trace.parent.name.startswith("demo-") and trace.parent.is_dir()
    assert reported == [trace]
    assert [p.name for p in tmp_path.iterdir()] == ["pilotq-out"]
    out = capsys.readouterr().out
    assert f"demo output (trace and plots) in {trace.parent}/\n" in out
    # each run gets its own folder
    assert cli.main(["demo", "--quick"]) == 0
    assert Path(launched[1][2].trace).parent != trace.parent
    # the folder is git-ignored
    assert "pilotq-out/" in (ROOT / ".gitignore").read_text().splitlines()


def test_demo_out_and_trace_options(launched, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("pilotq_mpi.report.run_report", lambda args: 0)
    assert cli.main(["demo", "--out", "mine"]) == 0
    assert launched[-1][2].trace == str(Path("mine") / "trace.jsonl")
    assert cli.main(["demo", "--trace", "t.jsonl"]) == 0
    assert launched[-1][2].trace == "t.jsonl"


def test_demo_says_what_each_duration_is(launched, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("pilotq_mpi.report.run_report", lambda args: 0)
    cli.main(["demo"])
    out = capsys.readouterr().out
    assert ("durations: 'driver time' runs from Pilot() to the demo's last result; the progress display's time"
            " ('[pilotq Ns] final:') from the pilot's start to the driver's end; 'makespan' from the pilot's start"
            " to the end of its last task\n") in out


# --- the exit code rank 0 recorded wins over the launcher's 137 (srun after MPI_Abort) ---

def _fake_launcher(script: str) -> list[str]:
    return ["sh", "-c", script]


def test_run_returns_the_code_rank0_recorded_when_the_launcher_reports_an_abort():
    argv = _fake_launcher('echo 75 > "$PILOTQ_EXIT_CODE_FILE"; exit 137')
    assert cli._run_and_recover_code(argv, dict(os.environ, PILOTQ_EXIT_CODE_FILE="")) == 75


def test_run_keeps_the_launchers_code_when_rank0_recorded_none():
    assert cli._run_and_recover_code(_fake_launcher("exit 9"), {"PATH": os.environ["PATH"]}) == 9
    assert cli._run_and_recover_code(_fake_launcher("exit 0"), {"PATH": os.environ["PATH"]}) == 0


def test_run_uses_and_keeps_a_code_file_the_user_chose(tmp_path):
    chosen = tmp_path / "code"
    argv = _fake_launcher('echo 3 > "$PILOTQ_EXIT_CODE_FILE"; exit 137')
    assert cli._run_and_recover_code(argv, {"PATH": os.environ["PATH"], "PILOTQ_EXIT_CODE_FILE": str(chosen)}) == 3
    assert chosen.read_text() == "3\n"
