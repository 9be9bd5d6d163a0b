"""README's "The Oracle" section runs as written: every curl command and the Python snippet, against a
real `realm oracle` on a free loopback port (the only change: 8765 becomes that port, and curl gets
-f so an HTTP error fails the command)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from bench.oracle import start_oracle
from tests.conftest import REPO, TRAINED_STEPS
from tests.helpers import clean_env, free_port, stop


def oracle_section() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index("\n## The Oracle\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", oracle_section(), flags=re.S)


def curl_commands() -> list[str]:
    commands = []
    for block in blocks("bash"):
        for cmd in block.replace("\\\n", " ").splitlines():
            if cmd.strip() and not cmd.lstrip().startswith("#"):
                commands.append(cmd.strip())
    return commands


@pytest.fixture(scope="module")
def readme_oracle(trained_home, tmp_path_factory):
    import shutil

    from vault.ledger import Ledger
    from vault.store import Store

    home = tmp_path_factory.mktemp("readme") / "home"
    shutil.copytree(trained_home, home, ignore=shutil.ignore_patterns("*.lock", "logs"))
    store = Store.for_home(home)
    Ledger(store).set_alias("champion", TRAINED_STEPS[1], by="test", reason="the README examples name it")
    store.close()
    port = free_port()
    proc = start_oracle(home, port, env={"REALM_LOG_CONSOLE": "0"})
    yield home, port
    assert stop(proc) == 0


def test_the_readme_has_the_examples_the_issue_asks_for():
    cmds = " ".join(curl_commands())
    for path in ("/v1/models", "/v1/chat/completions", "/v1/completions", "/oracle/load", "/oracle/status"):
        assert path in cmds
    for path in ("/oracle/unload", "/models/reload", "/models/info", '"stream": true'):
        assert path in cmds


@pytest.mark.parametrize("index", range(len(curl_commands())))
def test_each_curl_example_runs(readme_oracle, index):
    home, port = readme_oracle
    cmd = curl_commands()[index].replace("8765", str(port))
    cmd = re.sub(r"\bcurl -s", "curl -sf", cmd)
    proc = subprocess.run(
        ["bash", "-c", cmd], capture_output=True, text=True, timeout=120, cwd=home, env=clean_env()
    )
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout}\n{proc.stderr}"
    if '"stream": true' in cmd:
        events = [e for e in proc.stdout.split("\n\n") if e.startswith("data: ")]
        assert events[-1] == "data: [DONE]" and json.loads(events[-2][6:])["usage"]["completion_tokens"] > 0
    else:
        body = json.loads(proc.stdout)
        assert "error" not in body
        if "/chat/completions" in cmd or "/v1/completions" in cmd:
            assert body["model"].startswith("checkpoint-")  # the concrete checkpoint


def test_the_python_example_runs(readme_oracle):
    home, port = readme_oracle
    (code,) = blocks("python")
    proc = subprocess.run(
        [sys.executable, "-c", code.replace("8765", str(port))],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env=clean_env(),
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"checkpoint-{TRAINED_STEPS[1]}-")  # the champion's canonical name
