"""The `hotline` command line: help on every subcommand, data commands end to end, serve's readiness report."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from training.cli import build_parser, main


@pytest.mark.parametrize(
    "argv",
    [[], ["data"], ["data", "synth"], ["data", "import"], ["data", "validate"], ["train"], ["evaluate"], ["predict"],
     ["serve"], ["bundle"]],
)
def test_help_on_every_subcommand(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([*argv, "--help"])
    assert exc.value.code == 0
    assert "usage: hotline" in capsys.readouterr().out


def test_console_script_help_is_quick_and_lists_commands():
    out = subprocess.run([sys.executable, "-m", "training.cli", "--help"], capture_output=True, text=True, check=True)
    for cmd in ("data", "train", "evaluate", "predict", "serve"):
        assert cmd in out.stdout


def test_unknown_model_names_the_known_ones(capsys):
    assert main(["train", "nonexistent"]) == 2
    assert "intent" in capsys.readouterr().err


def test_validate_reports_bad_lines(tmp_path, capsys):
    m = tmp_path / "m.jsonl"
    m.write_text(
        "\n".join(
            [
                json.dumps({"id": "a", "text": "我要投诉", "intent": "service_attitude"}, ensure_ascii=False),
                "{not json",
                json.dumps({"id": "b", "text": "你好", "emotion": "furious"}, ensure_ascii=False),
            ]
        ),
        encoding="utf-8",
    )
    assert main(["data", "validate", str(m)]) == 1
    out = capsys.readouterr().out
    assert "1 valid records, 2 bad lines" in out
    assert "line 2" in out and "line 3" in out and "furious" in out


def test_import_manifest_round_trip(tiny_corpus, tmp_path, capsys):
    out = tmp_path / "imported"
    assert main(["data", "import", "--kind", "manifest", "--path", str(tiny_corpus / "test.jsonl"),
                 "--out", str(out), "--no-dataset"]) == 0
    assert main(["data", "validate", str(out / "manifest.jsonl")]) == 0
    n_in = len((tiny_corpus / "test.jsonl").read_text().splitlines())
    assert f"{n_in} valid records, 0 bad lines" in capsys.readouterr().out


def test_serve_without_an_intent_champion_and_no_train_says_how_to_get_one(capsys):
    assert main(["serve", "--no-train"]) == 1
    err = capsys.readouterr().err
    assert "no intent champion" in err and "hotline train intent" in err and "intent_quick.yaml" in err


def test_data_synth_exits_non_zero_when_items_fail(tmp_path):
    """A broken espeak-ng (exits 3 for every item) must not give a "successful" empty corpus."""
    import os
    import subprocess
    import sys

    bindir = tmp_path / "bin"
    bindir.mkdir()
    broken = bindir / "espeak-ng"
    broken.write_text("#!/bin/sh\necho 'espeak-ng: broken for this test' >&2\nexit 3\n")
    broken.chmod(0o755)
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run([sys.executable, "-m", "training.cli", "data", "synth", "--size", "tiny", "--out",
                           str(tmp_path / "c"), "--workers", "1", "--no-dataset"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "--max-failed-fraction" in proc.stderr
