"""`pilotq-mpi demo qml` starts the QML mini-app; `pilotq-mpi demo` still starts the mixed demo."""
import pytest

from pilotq_mpi import cli


@pytest.fixture
def launched(monkeypatch, tmp_path):
    calls = []
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "launch", lambda app, app_args, args: calls.append((app, list(app_args), args)) or 1)
    return calls


def test_demo_qml_runs_the_qml_driver_with_its_output_folder(launched):
    cli.main(["demo", "qml", "--quick", "-n", "4", "--out", "here", "--", "--images", "100"])
    (app, app_args, args), = launched
    assert app == str(cli.QML_DEMO) and cli.QML_DEMO.is_file()
    assert app_args == ["--quick", "--out", "here", "--images", "100"] and args.ranks == 4
    assert args.trace == "here/trace.jsonl"


def test_plain_demo_is_still_the_mixed_workload(launched):
    cli.main(["demo", "--quick"])
    (app, app_args, _), = launched
    assert app == str(cli.DEMO) and app_args == ["--quick"]


def test_demo_qml_refuses_qubits_and_says_where_its_options_go(launched, capsys):
    assert cli.main(["demo", "qml", "--qubits", "9"]) == 2
    assert "pass the QML options after `--`" in capsys.readouterr().err
    assert launched == []
