"""The watchtower is the one place that reads the realm: status, the game snapshot, lineage.

Lineage is driven through the real paths: files dropped into the inbox (with and without a generator
in the sidecar), uploads over the Tavern's HTTP API, and idle quests the guild writes itself, good
and bad from each source; then `realm lineage --json` and GET /api/lineage must both report exactly
what went in.
"""

from __future__ import annotations

import json
from pathlib import Path

import requests

from tests.helpers import free_port, run_realm, start_tavern, stop, write_home_config

OOPS = json.dumps({"messages": "oops"})  # refused by the spec: messages must be a list
OOPS_REASON = "'messages' must be a list of {role, content}; got a string"


def chat(i: int) -> str:
    return json.dumps(
        {"messages": [{"role": "user", "content": f"hello {i}"}, {"role": "assistant", "content": f"hi {i}"}]}
    )


def lines(*rows: str) -> bytes:
    return "".join(r + "\n" for r in rows).encode()


def group(rows: list[dict], key: str, name: str) -> dict:
    [row] = [r for r in rows if r[key] == name]
    return {k: row[k] for k in ("quests", "examples", "top_reasons")}


def tally(acc: int, ref: int, ex_acc: int, ex_ref: int, reasons: list[tuple[str, int]]) -> dict:
    return {
        "quests": {"accepted": acc, "refused": ref},
        "examples": {"accepted": ex_acc, "refused": ex_ref},
        "top_reasons": [{"reason": r, "count": n} for r, n in reasons],
    }


def test_lineage_per_generator_validator_and_source(home: Path):
    from arena.intake.service import Intake
    from guild.guild import Guild
    from sentinels.realm import Realm

    write_home_config(home, {"guild.skills": ["bin"], "guild.auto_generate": False})
    realm = Realm.open(home)
    intake = Intake.for_realm(realm)
    inbox = realm.home.inbox

    def drop(name: str, data: bytes, generator: str | None = None):
        (inbox / name).write_bytes(data)
        if generator:
            (inbox / f"{name}.meta.json").write_text(
                json.dumps({"generator": {"id": generator, "version": "2"}})
            )
        return intake.process_file(inbox / name)

    # The inbox: a generator's good file, two files with the same mistake on different lines, a .txt.
    quests = {
        "good": drop("good.jsonl", lines(chat(1), chat(2), chat(3)), "hand.chat"),
        "bad": drop("bad.jsonl", lines(chat(4), OOPS, chat(5)), "hand.chat"),
        "bad2": drop("bad2.jsonl", lines(OOPS, chat(6)), "hand.chat"),
        "txt": drop("notes.txt", lines(chat(7))),
    }
    # The guild: an idle quest as it writes one, and one spoiled by a broken line before intake.
    guild = Guild.from_realm(realm)
    quests["guild"] = intake.process_file(guild.write_idle_quest(inbox, count=4))
    spoiled = guild.write_idle_quest(inbox, count=4)
    with spoiled.open("a", encoding="utf-8") as f:
        f.write(OOPS + "\n")
    quests["guild_bad"] = intake.process_file(spoiled)
    assert {k: q.status for k, q in quests.items()} == {
        "good": "queued",
        "bad": "failed",
        "bad2": "failed",
        "txt": "failed",
        "guild": "queued",
        "guild_bad": "failed",
    }
    gen = quests["guild"].lineage["generator"]["id"]  # the skill's generator, from the guild's sidecar
    guild_examples, guild_bad_lines = quests["guild"].example_count, quests["guild_bad"].line_count
    assert guild_examples > 0 and guild_bad_lines > 0
    realm.store.close()

    # Uploads over HTTP, then the Tavern's report.
    port = free_port()
    proc = start_tavern(home, port)
    try:
        url = f"http://127.0.0.1:{port}"
        up = requests.post(f"{url}/api/quests?name=up.jsonl", data=lines(chat(8), chat(9)), timeout=30)
        up_bad = requests.post(f"{url}/api/quests?name=up_bad.jsonl", data=lines(chat(10), OOPS), timeout=30)
        assert (up.status_code, up.json()["quest"]["status"]) == (201, "queued")
        assert (up_bad.status_code, up_bad.json()["quest"]["status"]) == (201, "failed")
        api = requests.get(f"{url}/api/lineage", timeout=30).json()
    finally:
        stop(proc)
    cli = json.loads(run_realm("lineage", "--json", home=home, check=True).stdout)
    assert cli == api

    ext = "extension '.txt' is not accepted: quests are .jsonl files (rename it if it is JSONL)"
    # Per source: inbox, upload and guild, each with good and bad quests.
    assert {s["source"] for s in cli["sources"]} == {"inbox", "upload", "guild"}
    assert group(cli["sources"], "source", "inbox") == tally(1, 3, 3, 5, [(OOPS_REASON, 2), (ext, 1)])
    assert group(cli["sources"], "source", "upload") == tally(1, 1, 2, 2, [(OOPS_REASON, 1)])
    assert group(cli["sources"], "source", "guild") == tally(
        1, 1, guild_examples, guild_bad_lines, [(OOPS_REASON, 1)]
    )
    # Per generator: the sidecar's, the guild skill's, and none (uploads and the .txt).
    assert group(cli["generators"], "generator", "hand.chat") == tally(1, 2, 3, 5, [(OOPS_REASON, 2)])
    assert group(cli["generators"], "generator", gen) == tally(
        1, 1, guild_examples, guild_bad_lines, [(OOPS_REASON, 1)]
    )
    assert group(cli["generators"], "generator", "(none)") == tally(1, 2, 2, 2, [(OOPS_REASON, 1), (ext, 1)])
    # Per validator: what each refused and why; a spec's check passed only the quests of its spec.
    assert group(cli["validators"], "validator", "spec.chat_sft_v1") == tally(2, 3, 5, 7, [(OOPS_REASON, 3)])
    assert group(cli["validators"], "validator", "spec.skill_v1") == tally(
        1, 1, guild_examples, guild_bad_lines, [(OOPS_REASON, 1)]
    )
    assert group(cli["validators"], "validator", "intake.extension") == tally(
        3, 1, 5 + guild_examples, 0, [(ext, 1)]
    )
    # The busiest first: the validator that refused most heads its list.
    assert cli["validators"][0]["validator"] == "spec.chat_sft_v1"
    assert cli["totals"]["quests"] == {"accepted": 3, "refused": 5}
    # The human view names every source.
    text = run_realm("lineage", home=home, check=True).stdout
    assert "per source" in text and "upload" in text and "guild" in text


def test_status_cli_facade_and_tavern_read_one_model(trained_home: Path):
    from sentinels.realm import Realm
    from tavern.skills import decorate
    from watchtower.status import realm_status, snapshot

    realm = Realm.open(trained_home)
    try:
        st = realm_status(realm)
        assert realm.status() == st
        assert st["counts"]["checkpoints"] == 3 and st["hero"]["xp"] == 30
        assert json.loads(run_realm("status", "--json", home=trained_home, check=True).stdout) == st
        port = free_port()
        proc = start_tavern(trained_home, port)
        try:
            state = requests.get(f"http://127.0.0.1:{port}/api/state", timeout=30).json()
        finally:
            stop(proc)
        snap = snapshot(realm)
    finally:
        realm.store.close()
    # The Tavern adds only its own: the caller's auth, and icon URLs and links on the skill cards.
    assert state.pop("auth")
    assert state.pop("skills") == [decorate(c) for c in snap.pop("skills")]
    assert state == snap
