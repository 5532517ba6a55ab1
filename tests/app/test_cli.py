import subprocess
import sys

from crossbook.app.cli import SUBCOMMANDS, main


def test_unknown_command_is_a_usage_error(capsys):
    try:
        main(["no-such-command"])
    except SystemExit as exc:
        assert exc.code == 2
    else:  # pragma: no cover - argparse always exits on an unknown choice
        raise AssertionError("argparse accepted an unknown subcommand")
    assert "invalid choice" in capsys.readouterr().err


def test_help_lists_every_subcommand():
    out = subprocess.run(
        [sys.executable, "-m", "crossbook.app.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for name in SUBCOMMANDS:
        assert name in out
