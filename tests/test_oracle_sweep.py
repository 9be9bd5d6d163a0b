"""`realm oracle sweep` (tavern/oracle/sweep.py): think budgets scored by the skill's own scorer on a
real trained checkpoint, written as JSON, CSV and a PNG plot.

The sweep runs the Oracle's own app in-process (the default) on a copy of the session's trained home,
and over HTTP to a real `realm oracle` found through the home's hosts registry.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tavern.oracle.sweep import SweepError, parse_budgets, split_think, sweep_command
from tests.conftest import TRAINED_STEPS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _champion(home: Path, step: int) -> str:
    """Point `champion` at the checkpoint of `step`; its canonical name."""
    from sentinels.realm import Realm
    from vault.ledger import Ledger

    realm = Realm.open(home)
    try:
        ledger = Ledger(realm.store, realm.events)
        ledger.set_alias("champion", step, by="test", reason="sweep")
        return ledger.get(step)["name"]
    finally:
        realm.store.close()


def _run(*args: str):
    result = CliRunner().invoke(sweep_command, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def _check_outputs(out: Path, budgets: list[int], n: int) -> dict:
    rows = list(csv.DictReader((out / "sweep.csv").open(encoding="utf-8")))
    assert [int(r["budget"]) for r in rows] == budgets  # one row per budget, in order
    for r in rows:
        assert int(r["n"]) == n and 0 <= int(r["correct"]) <= n
        assert float(r["accuracy"]) == pytest.approx(int(r["correct"]) / n, abs=1e-6)
    png = (out / "sweep.png").read_bytes()
    assert png.startswith(PNG_MAGIC)
    from PIL import Image  # matplotlib's own dependency: a real decoder, not just the magic bytes

    with Image.open(out / "sweep.png") as img:
        img.verify()
        assert img.format == "PNG" and img.size[0] > 200 and img.size[1] > 100
    data = json.loads((out / "sweep.json").read_text(encoding="utf-8"))
    assert [r["budget"] for r in data["results"]] == budgets
    assert len(data["answers"]) == n * len(budgets)
    return data


def test_sweep_in_process_writes_json_csv_and_png(trained_copy, tmp_path):
    name = _champion(trained_copy, TRAINED_STEPS[-1])
    out = tmp_path / "sweep"
    result = _run(
        "--skill", "bin", "--level", "3", "--budgets", "0,16,64", "--limit", "3",
        "--out", str(out), "--home", str(trained_copy),
    )  # fmt: skip
    data = _check_outputs(out, [0, 16, 64], 3)
    # The default model is the champion, and the files name the concrete checkpoint that answered.
    assert data["model"] == "dio@champion" and data["resolved_model"] == name
    assert data["source"] == "in-process" and data["skill"] == "bin" and data["level"] == 3
    assert f"png: {out / 'sweep.png'}" in result.output


def test_sweep_over_http_to_the_registrys_oracle(trained_copy, tmp_path):
    from bench.oracle import start_oracle
    from tests.helpers import free_port, stop
    from tests.test_tavern_oracle import ORACLE_HOST, write_hosts

    port = free_port()
    write_hosts(trained_copy, {ORACLE_HOST: port})
    proc = start_oracle(trained_copy, port, env={"REALM_LOG_CONSOLE": "0"})
    try:
        out = tmp_path / "sweep-http"
        _run(
            "--skill", "bin", "--level", "2", "--budgets", "0,32", "--limit", "2",
            "--model", f"dio@step-{TRAINED_STEPS[0]}", "--host", ORACLE_HOST,
            "--out", str(out), "--home", str(trained_copy),
        )  # fmt: skip
    finally:
        assert stop(proc) == 0
    data = _check_outputs(out, [0, 32], 2)
    assert data["source"] == f"http://127.0.0.1:{port}"
    assert data["resolved_model"].startswith(f"checkpoint-{TRAINED_STEPS[0]}-")


def test_a_sweep_that_cannot_run_says_why(trained_home, tmp_path):
    runner = CliRunner()
    for args, words in (
        (["--skill", "bin", "--level", "3", "--budgets", "0,-4"], "negative"),
        (["--skill", "nope", "--level", "1"], "no active skill 'nope'"),
        (["--skill", "bin", "--level", "999"], "level 999"),
        (["--skill", "bin", "--level", "1", "--host", "nowhere"], "nowhere"),
    ):
        result = runner.invoke(sweep_command, [*args, "--home", str(trained_home), "--out", str(tmp_path)])
        assert result.exit_code == 1 and words in result.output, (args, result.output)
    assert not list(tmp_path.iterdir())  # nothing written


def test_budgets_and_the_answer_part():
    assert parse_budgets("0, 16,,64,16") == [0, 16, 64]
    for bad in ("", "a", "-1"):
        with pytest.raises(SweepError):
            parse_budgets(bad)
    assert split_think("<think>carry the one</think>\n<answer>add(①, ①) = ①⓪</answer>") == (
        "carry the one",
        "add(①, ①) = ①⓪",
    )
    assert split_think("①⓪") == ("", "①⓪")
