"""Issue #12's intake and upload defects, each shown on the real parts: a real Tavern over HTTP,
a real SQLite realm, a real writer process, the watcher thread. Also the one-owner rules: the spec
rules (intake's fast and slow paths, the trainer's formatting) and eval quarantine's normal form."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import textwrap

import msgspec
import orjson
import pytest
import requests

from arena.intake import Intake
from arena.intake.inbox import UNTERMINATED_SETTLE_S, leftovers, still_arriving, waiting_files, writers
from arena.intake.watcher import InboxWatcher
from sentinels.config import IntakeConfig
from tests.helpers import free_port, start_tavern, stop, wait_until, write_home_config


def chat(i: int, answer: str = "hello there") -> dict:
    return {
        "messages": [{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": answer}]
    }


def jsonl(rows: list) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_intake(realm, **cfg) -> Intake:
    return Intake(realm.home, realm.store, realm.events, IntakeConfig(**cfg))


def quest_named(realm, name: str) -> dict | None:
    return realm.store.one("SELECT * FROM quests WHERE name = ? ORDER BY id DESC LIMIT 1", (name,))


# ---- defect 1 and 12: uploads over real HTTP ---------------------------------------------------
@pytest.fixture
def tavern(realm):
    write_home_config(realm.home.root, {"tavern.max_upload_mb": 1})
    port = free_port()
    proc = start_tavern(realm.home.root, port)
    yield f"http://127.0.0.1:{port}/api/quests"
    if proc.poll() is None:
        stop(proc)


def test_raw_upload_bodies_are_the_file_with_the_size_limit_and_415(tavern, realm):
    """curl --data-binary sends application/x-www-form-urlencoded: the body must still be the file."""
    bodies = {
        "curl.jsonl": ("application/x-www-form-urlencoded", jsonl([chat(i) for i in range(3)])),
        "octet.jsonl": ("application/octet-stream", jsonl([chat(i) for i in range(10, 14)])),
        "untyped.jsonl": (None, jsonl([chat(i) for i in range(20, 22)])),
    }
    for name, (ctype, body) in bodies.items():
        headers = {"Content-Type": ctype} if ctype else {}
        r = requests.post(f"{tavern}?name={name}", data=body, headers=headers, timeout=30)
        assert r.request.headers.get("Content-Type") == ctype, name
        assert r.status_code == 201, (name, r.text)
        quest = r.json()["quest"]
        assert (quest["status"], quest["sha256"], quest["size_bytes"]) == ("queued", sha(body), len(body)), (
            name
        )
        assert (realm.home.root / quest["path"]).read_bytes() == body, name

    big = jsonl([chat(i, "x" * 1000) for i in range(1500)])  # ~1.5 MB: over the 1 MB limit
    assert len(big) > 1 << 20
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    r = requests.post(f"{tavern}?name=big.jsonl", data=big, headers=form, timeout=30)
    assert r.status_code == 413, r.text
    assert "over the limit of 1 MB (tavern.max_upload_mb)" in r.json()["error"]
    chunks = (big[i : i + 65536] for i in range(0, len(big), 65536))  # chunked: no Content-Length
    r = requests.post(f"{tavern}?name=big2.jsonl", data=chunks, timeout=30)
    assert r.request.headers.get("Transfer-Encoding") == "chunked"
    assert r.status_code == 413 and "over the limit of 1 MB" in r.json()["error"], r.text

    r = requests.post(f"{tavern}?name=pic.jsonl", data=b"\x89PNG", headers={"Content-Type": "image/png"})
    assert r.status_code == 415 and "'image/png' is not a quest" in r.json()["error"], r.text
    assert waiting_files(realm.home.inbox) == []
    assert realm.store.scalar("SELECT count(*) FROM quests") == 3  # refused bodies never became quests


def test_upload_status_comes_from_the_error_type_not_its_words(realm):
    """A refusal whose message merely says 'limit' (a priority named so) is a 400, not a 413."""
    from tavern.errors import ApiError
    from tavern.quests import save_upload

    with pytest.raises(ApiError) as exc:
        save_upload(realm, io.BytesIO(jsonl([chat(1)])), "p.jsonl", priority="limitless")
    assert exc.value.status == 400 and "priority must be one of" in exc.value.message
    limit = realm.config.tavern.max_upload_mb << 20
    with pytest.raises(ApiError) as exc:
        save_upload(realm, io.BytesIO(b"x" * (limit + 1)), "big.jsonl")
    assert exc.value.status == 413 and "tavern.max_upload_mb" in exc.value.message


# ---- defect 2: invalid UTF-8 in the middle of a file ---------------------------------------------
@pytest.mark.parametrize(
    ("bad", "encoding"),
    [("café".encode("latin-1"), "Latin-1"), ("“quoted”".encode("cp1252"), "Windows-1252")],
)
def test_invalid_utf8_mid_file_names_line_offset_and_encoding(realm, bad, encoding):
    rows = [json.dumps(chat(i)).encode() for i in range(60)]
    rows[40] = rows[40].replace(b"hello there", bad)
    data = b"\n".join(rows) + b"\n"
    path = realm.home.inbox / "mixed.jsonl"
    path.write_bytes(data)
    q = make_intake(realm).process_file(path)
    offset = data.index(bad[-1:] if encoding == "Latin-1" else bad[:1])
    assert q.status == "failed" and "internal error" not in q.reason
    assert q.reason.startswith(f"line 41: not valid UTF-8 (byte 0x{data[offset]:02x} at column"), q.reason
    assert f"byte offset {offset} in the file" in q.reason and encoding in q.reason
    assert q.lineage["validator"] == "intake.encoding" and q.path.read_bytes() == data


# ---- defect 5: duplicates dropped, original bytes kept -------------------------------------------
def test_a_deduplicated_quest_keeps_its_original_bytes_and_sha(realm):
    rows = [chat(i) for i in range(6)]
    data = jsonl(rows) + jsonl(rows[:2]) + b"  " + json.dumps(rows[3]).encode() + b"  \n"
    path = realm.home.inbox / "dups.jsonl"
    path.write_bytes(data)
    q = make_intake(realm).process_file(path)
    assert (q.status, q.example_count, q.duplicates_dropped) == ("queued", 6, 3)
    assert q.path.read_bytes() == jsonl(rows)  # the trained file is without the duplicates
    assert q.sha256 == q.lineage["sha256"] == sha(data)  # the table's sha256 is the original's
    original = realm.home.root / q.lineage["original_path"]
    assert original.read_bytes() == data and original.name == f"{sha(data)}.jsonl"
    assert q.lineage["sha256_queued"] == sha(jsonl(rows))
    path.write_bytes(data)  # the same drop again is the same quest: refused by the original's sha256
    again = make_intake(realm).process_file(path)
    assert again.status == "failed" and f"same sha256 as quest #{q.id}" in again.reason


# ---- defect 6: leftovers and the one "waiting files" rule ----------------------------------------
def test_one_waiting_rule_ignores_sidecars_partials_and_folders(realm):
    from arena.queue import QuestQueue
    from guild.hooks import _waiting_work
    from tavern.quests import board

    inbox = realm.home.inbox
    (inbox / "stray.jsonl.meta.json").write_text('{"priority": "high"}')
    (inbox / "copy.jsonl.part").write_bytes(b"{")
    (inbox / ".hidden.jsonl").write_bytes(b"{")
    (inbox / "folder").mkdir()
    assert waiting_files(inbox) == []
    assert not _waiting_work(realm)  # stray files used to stop idle quests for good
    assert board(realm, QuestQueue(realm.home, realm.store, realm.events))["inbox"] == []
    (inbox / "real.jsonl").write_bytes(jsonl([chat(1)]))
    assert waiting_files(inbox) == [inbox / "real.jsonl"]
    assert _waiting_work(realm)
    assert board(realm, QuestQueue(realm.home, realm.store, realm.events))["inbox"] == ["real.jsonl"]


def test_folders_and_orphan_sidecars_are_refused_after_the_grace_and_kept(realm):
    inbox = realm.home.inbox
    cfg = IntakeConfig(settle_s=0.1, leftover_grace_s=3600)
    patient = Intake(realm.home, realm.store, realm.events, cfg)
    # Events only (no listing after the first): once `first` is queued the watcher is running, and
    # the marker's event comes after the folder's, so by the time the marker is queued the watcher
    # has seen the folder created and settled.
    with InboxWatcher(patient, rescan_s=3600):
        (inbox / "first.jsonl").write_bytes(jsonl([chat(3)]))
        wait_until(lambda: quest_named(realm, "first.jsonl"), 15, "the first quest")
        folder = inbox / "folder.jsonl"
        folder.mkdir()
        (folder / "inside.jsonl").write_bytes(jsonl([chat(1)]))
        (inbox / "lost.jsonl.meta.json").write_bytes(b'{"priority": "high"}')
        # A sidecar whose data file is still arriving under a temp name (rsync's) is not an orphan.
        (inbox / "coming.jsonl.meta.json").write_bytes(b"{}")
        (inbox / ".coming.jsonl.Ab12Cd").write_bytes(b"{")
        (inbox / "marker.jsonl").write_bytes(jsonl([chat(2)]))
        wait_until(lambda: quest_named(realm, "marker.jsonl"), 15, "the marker quest")
    assert folder.is_dir() and quest_named(realm, "folder.jsonl") is None  # not before its grace
    assert quest_named(realm, "lost.jsonl.meta.json") is None
    intake = Intake(realm.home, realm.store, realm.events, msgspec.structs.replace(cfg, leftover_grace_s=0.3))
    assert leftovers(inbox, wait_s=3600) == []
    with InboxWatcher(intake) as watcher:
        dir_q = wait_until(lambda: quest_named(realm, "folder.jsonl"), 15, "the folder's refusal")
        side_q = wait_until(lambda: quest_named(realm, "lost.jsonl.meta.json"), 15, "the orphan's refusal")
        assert watcher.is_alive()
    assert dir_q["status"] == "failed" and "is a directory, not a quest file" in dir_q["reason"]
    assert side_q["status"] == "failed" and "never came" in side_q["reason"]
    kept = realm.home.root / dir_q["path"]
    assert (kept / "inside.jsonl").read_bytes() == jsonl([chat(1)])
    assert (realm.home.root / side_q["path"]).read_bytes() == b'{"priority": "high"}'
    for q in (dir_q, side_q):
        err = json.loads((realm.home.root / q["error_path"]).read_text())
        assert err["message"] == q["reason"]
    rejected = {e.payload["name"] for e in realm.events.since(0, kinds=["quest.rejected"])}
    assert rejected == {"folder.jsonl", "lost.jsonl.meta.json"}
    assert sorted(p.name for p in inbox.iterdir()) == [
        ".claimed",
        ".coming.jsonl.Ab12Cd",
        "coming.jsonl.meta.json",
    ]


# ---- defect 7: a writer that pauses mid-line -----------------------------------------------------
WRITER = textwrap.dedent(
    """
    import sys
    path, head, tail = sys.argv[1], bytes.fromhex(sys.argv[2]), bytes.fromhex(sys.argv[3])
    with open(path, "wb") as f:
        f.write(head)
        f.flush()
        print("half", flush=True)
        sys.stdin.readline()  # the pause: as long as the test likes, far longer than settle_s
        f.write(tail)
    """
)


def test_a_writer_paused_mid_line_keeps_its_file_until_it_closes_it(realm):
    inbox = realm.home.inbox
    data = jsonl([chat(i) for i in range(8)])
    cut = data.index(b"\n", len(data) // 2) + 20  # half-way through line 5
    slow = inbox / "a_slow.jsonl"
    with InboxWatcher(make_intake(realm, settle_s=0.2)):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(slow), data[:cut].hex(), data[cut:].hex()],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert writer.stdout.readline().strip() == "half"
            # A file dropped after the pause began is settled after the paused one would be: once
            # it is queued, the watcher has had its chance to take the half-written file.
            (inbox / "z_marker.jsonl").write_bytes(jsonl([chat(99)]))
            wait_until(lambda: quest_named(realm, "z_marker.jsonl"), 15, "the marker quest")
            assert slow.read_bytes() == data[:cut] and quest_named(realm, "a_slow.jsonl") is None
            writer.communicate("go\n", timeout=30)
        finally:
            if writer.poll() is None:
                writer.kill()
        q = wait_until(lambda: quest_named(realm, "a_slow.jsonl"), 15, "the slow quest")
    assert (q["status"], q["example_count"], q["sha256"]) == ("queued", 8, sha(data)), q["reason"]


def test_the_claim_rule_sees_writers_and_falls_back_to_line_ends(realm, tmp_path):
    path = tmp_path / "q.jsonl"
    with open(path, "wb") as f:
        f.write(b'{"text": "half')
        f.flush()
        seen = writers()
        assert seen is not None and (path.stat().st_dev, path.stat().st_ino) in seen
        assert "open for writing" in still_arriving(path, 0.0, seen)
    assert still_arriving(path, 0.0, writers()) is None  # closed: only settle_s counts
    # Without /proc (open_for_writing unknown), a file cut mid-line waits UNTERMINATED_SETTLE_S.
    assert f"hold still for {UNTERMINATED_SETTLE_S:g}s" in still_arriving(path, 0.0, None)
    path.write_bytes(b'{"text": "whole"}\n')
    assert still_arriving(path, 0.0, None) is None


# ---- one owner for the spec rules ----------------------------------------------------------------
GOOD_LINES = [
    chat(1),
    {**chat(2), "metadata": {"src": "x"}},
    {**chat(3), "metadata": None},
    {"messages": [{"role": "system", "content": "s"}, *chat(4)["messages"]]},
    {**chat(5), "metadata": {"skill": "bin", "level": 2}},
    {"prompt": "2+2=", "completion": "4"},
    {"text": "plain text"},
    {"prompt": "p", "completion": "c", "metadata": {"a": 1}},
]
BAD_LINES = [
    {"messages": []},
    {"messages": [{"role": "user", "content": "q"}]},
    {"messages": [{"role": "bot", "content": "q"}, {"role": "assistant", "content": "a"}]},
    {"messages": [{"role": "user", "content": " "}, {"role": "assistant", "content": "a"}]},
    {"messages": [{"role": "user", "content": 1}, {"role": "assistant", "content": "a"}]},
    {"messages": [{"role": "user", "content": "q", "x": 1}, {"role": "assistant", "content": "a"}]},
    {**chat(6), "score": 1},
    {**chat(7), "metadata": []},
    {**chat(8), "metadata": {"skill": "bin", "level": 0}},
    {**chat(9), "metadata": {"skill": "", "level": 1}},
    {**chat(10), "metadata": {"skill": "bin", "level": True}},
    {"prompt": "p"},
    {"prompt": "p", "completion": " "},
    {"text": "t", "prompt": None},
    {"prompt": "p", "completion": "c", "text": None},
    {"text": "t", "prompt": "p"},
    {"text": ""},
    {"prompt": "p", "response": "r"},
    {"messages": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "q"}]},
    {"messages": [*chat(11)["messages"], {"role": "system", "content": "s"}, *chat(12)["messages"]]},
    [chat(1)],
    "text",
]


@pytest.mark.parametrize("spec", ["chat_sft_v1", "skill_v1", "completion_v1"])
def test_fast_path_and_spec_rules_agree(spec):
    """The msgspec fast path is only a speed-up: it accepts exactly the lines the spec accepts."""
    from arena.intake.fast import FAST, FAST_ERRORS
    from arena.intake.specs import SPECS

    fast, slow = FAST[spec], SPECS[spec]
    lines = [orjson.dumps(x) for x in GOOD_LINES + BAD_LINES]
    lines += [b'{"messages": [}', b'{"text": "caf\xe9"}', b'{"text": "a\\ud800"}']
    for line in lines:
        try:
            fast_ok = fast.ok(fast.decode(line))
        except FAST_ERRORS:
            fast_ok = False
        try:
            slow_ok = slow(orjson.loads(line)) is None
        except orjson.JSONDecodeError:
            slow_ok = False
        assert fast_ok == slow_ok, (spec, line)
    good = b"\n".join(orjson.dumps(x) for x in GOOD_LINES if slow(x) is None)
    assert all(map(fast.ok, fast.decode_lines(good)))  # the chunk path agrees too


def test_formatting_takes_the_spec_rules_from_intake():
    """Records intake refuses are refused by the trainer too; a record with no spec is detected
    by intake's detect_spec (prompt/response chats and metacog 'prompt' were accepted before)."""
    from arena.formatting import FormatStats, Formatter
    from arena.hero import build_hero
    from arena.intake.specs import SPECS, detect_spec
    from sentinels.config import REPO_ROOT, HeroConfig

    _, tok = build_hero(HeroConfig(), REPO_ROOT)
    fmt = Formatter(tok, max_length=512, think_weight=0.5)
    metacog = {"text": "Q?<think>hmm</think><answer>42</answer>", "plan_class": "direct"}
    for record in [*GOOD_LINES, metacog, *(b for b in BAD_LINES if isinstance(b, dict))]:
        spec = detect_spec(record)
        intake_ok = spec is not None and SPECS[spec](record) is None
        stats = FormatStats()
        assert (fmt.format(record, None, stats) is not None) == intake_ok, (record, stats.errors)
    stats = FormatStats()
    assert fmt.format({"prompt": "p", "response": "r"}, "chat_sft_v1", stats) is None
    assert fmt.format({**metacog, "prompt": "Q"}, "metacog_v1", stats) is None
    assert stats.bad == 2 and "unknown field 'prompt' for metacog_v1" in stats.errors[1]


# ---- one owner for eval quarantine's normal form -------------------------------------------------
def test_a_generated_eval_prompt_is_quarantined_despite_spacing_and_case(realm):
    from arena.intake.quarantine import quarantine_key
    from guild.evalsets import load_eval_set
    from guild.generators import norm_prompt

    assert norm_prompt is quarantine_key  # the guild's exclusion and intake's check are one function
    items = load_eval_set(realm.home.root, "bin", 1)
    prompt = items[0]["prompt"]
    varied = "  " + prompt.upper().replace(" ", " \t ") + "\n"
    assert varied != prompt and quarantine_key(varied) == quarantine_key(prompt)
    rows = [
        chat(1),
        {"messages": [{"role": "user", "content": varied}, {"role": "assistant", "content": "x"}]},
    ]
    path = realm.home.inbox / "leak.jsonl"
    path.write_bytes(jsonl(rows))
    q = make_intake(realm).process_file(path)
    assert q.status == "failed" and "line 2: eval quarantine" in q.reason and "bin level 1" in q.reason


def test_the_guilds_idle_quest_passes_intake_whole(realm):
    """The typed sidecar check takes the guild's sidecar (extra planner keys are provenance), the
    role-order rule takes its chats, and none of its prompts trips the quarantine."""
    from msgspec.structs import replace

    from guild.guild import Guild

    cfg = replace(realm.config, guild=replace(realm.config.guild, skills=("bin",), idle_quest_size=100))
    guild = Guild(realm.home.root, realm.store, realm.events, cfg)
    guild.ensure_eval_sets()
    path = guild.write_idle_quest(realm.home.inbox)
    count = len(path.read_bytes().splitlines())
    q = make_intake(realm, level="deep").process_file(path)
    assert (q.status, q.spec, q.skill, q.priority, q.example_count) == (
        "queued",
        "skill_v1",
        "bin",
        "low",
        count,
    )
    assert q.lineage["generator"] == {"id": "bin", "version": 2} and "planner_decision" in q.lineage["extra"]
