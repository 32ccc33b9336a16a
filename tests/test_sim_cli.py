"""`turnout sim` through its argparse registration: bad input and a small good run."""

import argparse
import json

import pytest

from migration.cli import register


def run(argv):
    ap = argparse.ArgumentParser(prog="turnout")
    register(ap.add_subparsers(dest="cmd"))
    args = ap.parse_args(["sim", *argv])
    return args.func(args)


def test_bad_csv_is_one_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    assert run(["--trace", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "missing column" in err


@pytest.mark.parametrize("body", ["TIMESTAMP,ContextTokens,GeneratedTokens\n1.0,abc,3\n",
                                  "TIMESTAMP,ContextTokens,GeneratedTokens\n",
                                  "TIMESTAMP,ContextTokens,GeneratedTokens\nnot-a-time,5,3\n",
                                  "TIMESTAMP,ContextTokens,GeneratedTokens\n1.0,0,3\n"])
def test_bad_rows(tmp_path, capsys, body):
    f = tmp_path / "t.csv"
    f.write_text(body)
    assert run(["--trace", str(f)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_missing_file_and_bad_numbers(tmp_path, capsys):
    assert run(["--trace", str(tmp_path / "nope.csv")]) == 2
    assert run(["--replicas", "0"]) == 2
    assert run(["--load", "-1"]) == 2
    assert run(["--profile", "tpu"]) == 2
    assert all(len(line) < 200 for line in capsys.readouterr().err.splitlines())


def test_small_trace_runs_every_policy(tmp_path, capsys):
    f = tmp_path / "t.csv"
    rows = [f"{i * 0.5:.3f},{200 + 37 * i % 900},{20 + 13 * i % 200}" for i in range(60)]
    f.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + "\n".join(rows) + "\n")
    out_json = tmp_path / "r.json"
    assert run(["--trace", str(f), "--replicas", "3", "--load", "0.8", "--profile", "gpu",
                "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    for name in ("round_robin", "power_of_two", "freeness", "freeness_migration", "P99 TTFT"):
        assert name in out
    data = json.loads(out_json.read_text())
    assert all(r["completed"] == 60 for r in data["results"].values())
