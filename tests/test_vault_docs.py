"""docs/API.md cannot drift from the API: every curl example in it runs against a real `realm vault serve`.

Each example is taken from the ```bash blocks as written (continuation lines joined), its host:port
swapped for a free loopback port, and run by the real `curl` in a shell with REALM_TOKEN set (the test
home requires the token on mutations, so the documented header is checked too). An example passes when
its status is 2xx, or the status a `# expect NNN` line just above it declares; when a ```json block
follows its ```bash block, the answer must have that block's shape (every documented key, with the
same JSON type, recursively; `null` in the docs means "may be null"). Examples run in document order
against one home, as a reader would type them. Every endpoint the server has needs an example.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.helpers import REPO, enqueue, free_port, stop
from tests.test_vault_api import TOKEN, make_checkpoint, open_home, start_vault

DOC = REPO / "docs" / "API.md"
DOC_HOST = "127.0.0.1:8767"
FENCE = re.compile(r"```(\w*)\n(.*?)```", re.S)
EXPECT = re.compile(r"#\s*expect\s+(\d{3})")


@dataclass
class Example:
    command: str
    expect: int | None  # None: any 2xx
    shape: object | None  # the documented answer, when a json block follows
    line: int

    @property
    def method(self) -> str:
        m = re.search(r"-X\s+(\w+)", self.command)
        if m:
            return m.group(1).upper()
        return "POST" if re.search(r"\s(-d|--data\S*)\s", self.command) else "GET"

    @property
    def path(self) -> str:
        m = re.search(r"https?://[^/\s\"']+(/[^\s\"'?]*)", self.command)
        assert m, f"docs/API.md line {self.line}: no URL in {self.command!r}"
        return m.group(1)


def examples(text: str) -> list[Example]:
    out: list[Example] = []
    blocks = list(FENCE.finditer(text))
    for i, block in enumerate(blocks):
        lang, body = block.group(1), block.group(2)
        if lang not in ("bash", "sh", "shell"):
            continue
        nxt = blocks[i + 1] if i + 1 < len(blocks) else None
        between = text[block.end() : nxt.start()] if nxt else ""
        shape = None
        if nxt is not None and nxt.group(1) == "json" and not between.strip():
            shape = json.loads(nxt.group(2))
        found, expect, pending = [], None, ""
        start_line = text[: block.start()].count("\n") + 2
        for n, raw in enumerate(body.splitlines()):
            line = raw.strip()
            m = EXPECT.search(line)
            if m and line.startswith("#"):
                expect = int(m.group(1))
                continue
            if pending or line.startswith("curl "):
                pending += line.rstrip("\\").strip() + " "
                if not line.endswith("\\"):
                    found.append(Example(pending.strip(), expect, None, start_line + n))
                    pending, expect = "", None
        if found and shape is not None:
            found[-1].shape = shape  # the json block documents the block's last example
        out += found
    return out


def same_shape(doc: object, got: object, where: str = "$") -> list[str]:
    """Where `got` lacks a documented key or has another JSON type (null in the docs: any type)."""
    if doc is None:
        return []
    if isinstance(doc, bool) or isinstance(got, bool):
        return [] if type(doc) is type(got) else [f"{where}: documented {doc!r}, got {got!r}"]
    if isinstance(doc, (int, float)):
        return [] if isinstance(got, (int, float)) else [f"{where}: documented a number, got {got!r}"]
    if isinstance(doc, dict):
        if not isinstance(got, dict):
            return [f"{where}: documented an object, got {type(got).__name__}"]
        problems = []
        for key, value in doc.items():
            if key not in got:
                problems.append(f"{where}.{key}: documented, missing from the answer")
            else:
                problems += same_shape(value, got[key], f"{where}.{key}")
        return problems
    if isinstance(doc, list):
        if not isinstance(got, list):
            return [f"{where}: documented a list, got {type(got).__name__}"]
        if doc and not got:
            return [f"{where}: documented a non-empty list, got []"]
        return same_shape(doc[0], got[0], f"{where}[0]") if doc and got else []
    return [] if isinstance(got, type(doc)) else [f"{where}: documented {type(doc).__name__}, got {got!r}"]


def test_examples_are_parsed_from_the_doc():
    found = examples(DOC.read_text())
    assert len(found) >= 30
    assert all(DOC_HOST in e.command for e in found), [e.command for e in found if DOC_HOST not in e.command]
    assert sum(e.shape is not None for e in found) >= 25  # nearly every example documents its answer


@pytest.fixture
def served(tmp_path):
    from vault.zones import add_zone

    home = tmp_path / "home"
    home.mkdir()
    realm = open_home(home, {"tavern.token": TOKEN, "tavern.open_on_loopback": False})
    make_checkpoint(realm, 100, train_loss=2.5, val_loss=2.6)
    make_checkpoint(realm, 200, train_loss=1.9, val_loss=2.1)
    nas = tmp_path / "nas"
    nas.mkdir()
    add_zone(realm.store, "nas", str(nas))  # what `realm vault zone add nas /mnt/nas` does
    realm.store.close()
    chat = {
        "messages": [
            {"role": "user", "content": "Compute: add(①, ①)"},
            {"role": "assistant", "content": "①⓪"},
        ]
    }
    enqueue(home, "bin-drill.jsonl", [chat])
    port = free_port()
    proc = start_vault(home, port)
    yield port
    assert stop(proc) == 0


def test_every_curl_example_in_api_md_runs(served, tmp_path):
    port = served
    work = tmp_path / "cwd"
    work.mkdir()
    found = examples(DOC.read_text())
    env = {"PATH": "/usr/bin:/bin", "REALM_TOKEN": TOKEN}
    for ex in found:
        cmd = ex.command.replace(DOC_HOST, f"127.0.0.1:{port}") + " -sS -w '\\n%{http_code}'"
        proc = subprocess.run(
            ["bash", "-c", cmd], capture_output=True, text=True, cwd=work, env=env, timeout=60
        )
        assert proc.returncode == 0, f"docs/API.md:{ex.line}: {ex.command}\n{proc.stderr}"
        body, _, status = proc.stdout.rpartition("\n")
        where = f"docs/API.md:{ex.line}: {ex.command}\n-> {status} {body[:500]}"
        if ex.expect is None:
            assert status.startswith("2"), where
        else:
            assert int(status) == ex.expect, where
        out = re.search(r"\s-o\s+(\S+)", ex.command)
        if out:  # a download: the file is what the docs say it is
            path = work / out.group(1)
            assert path.is_file() and path.stat().st_size > 0, where
            if path.suffix == ".tar":
                assert tarfile.is_tarfile(path), where
            continue
        answer = json.loads(body)
        if ex.expect is not None and ex.expect >= 400:
            assert set(answer["error"]) >= {"message", "type"}, where
        if ex.shape is not None:
            problems = same_shape(ex.shape, answer)
            assert not problems, where + "\n" + "\n".join(problems)


def test_every_endpoint_has_a_curl_example(served):
    """The server's own list of endpoints against the doc's examples: none undocumented."""
    rules = requests.get(f"http://127.0.0.1:{served}/api").json()["endpoints"]
    documented = [(e.method, e.path) for e in examples(DOC.read_text())]
    missing = []
    for rule in rules:
        methods, path = rule.split(" ", 1)
        pattern = re.sub(r"<path:[^>]+>", ".+", path)
        pattern = "^" + re.sub(r"<[^>]+>", "[^/]+", pattern) + "$"
        for method in methods.split("|"):
            if not any(m == method and re.match(pattern, p) for m, p in documented):
                missing.append(f"{method} {path}")
    assert not missing, f"endpoints without a curl example in docs/API.md: {missing}"


def test_shape_check_catches_drift():
    assert same_shape({"a": 1, "b": [{"c": "x"}]}, {"a": 2.5, "b": [{"c": "y"}], "extra": 1}) == []
    assert (
        same_shape({"a": 1}, {"a": "1"}) and same_shape({"a": 1}, {}) and same_shape({"b": [{}]}, {"b": []})
    )
    assert (
        shlex.split(examples("```bash\ncurl -X PUT http://127.0.0.1:8767/x \\\n  -d '{}'\n```\n")[0].command)[
            -1
        ]
        == "{}"
    )
    assert Path(DOC).is_file()
