"""Run the speccascade CLI in-process for tests: (exit code, stdout, stderr)."""

from speccascade.cli import main


def run(capsys, *argv):
    try:
        main(list(argv))
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err
