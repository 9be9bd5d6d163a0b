"""Preemption (issue 16, item 7): a player's quest never waits behind an idle one.

The real `realm arena` fights a guild idle quest; the test pauses it between steps (so the drop lands
mid-battle whatever the box's speed), drops a player's quest into the inbox, and resumes. With
`arena.preempt: idle` the very next step trains the dropped quest and the idle quest goes back to the
queue; the arena is then killed (kill -9) after the dropped quest's battle, and the restart resumes
the idle quest at its offset from the checkpoint's record, the crash path. The step events' `span`s
show every training example of every quest trained exactly once per epoch. `priority` lets a
high-priority quest take over a low-priority player quest, which then resumes in the same process;
`never` lets the idle battle finish first. The rule itself (claim order, `outranks`) is checked on a
real queue. Each arena test starts one or two arenas (~5 s each on an idle 2-core box).
"""

from __future__ import annotations

import json
import signal
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from arena.formatting import QuestData
from arena.queue import QuestQueue, outranks
from sentinels.realm import Realm
from tests.helpers import (
    arena,
    events,
    query,
    send_command,
    start_arena,
    tiny_config,
    wait_until,
    write_jsonl,
)

SEED = 1234  # training.seed: the default, which tiny_config keeps


def chats(n: int, tag: str) -> list[dict]:
    """Distinct short chats that no eval set holds ("say p3" -> "p3")."""
    return [
        {
            "messages": [
                {"role": "user", "content": f"say {tag}{i}"},
                {"role": "assistant", "content": f"{tag}{i}"},
            ]
        }
        for i in range(n)
    ]


def set_preempt(home: Path, mode: str) -> None:
    cfg = yaml.safe_load((home / "realm.yaml").read_text())
    cfg["arena"] = {"preempt": mode}
    (home / "realm.yaml").write_text(yaml.safe_dump(cfg))


def queue_quest(home: Path, name: str, n: int, *, source: str, priority: str, epochs: int = 1) -> int:
    """Queue a quest as intake would (a guild idle quest carries source guild and epochs)."""
    realm = Realm.open(home)
    realm.init()
    try:
        src = write_jsonl(home / f".{name}.tmp", chats(n, name[:2]))
        quest = QuestQueue(realm.home, realm.store, realm.events).enqueue(
            src,
            name=name,
            priority=priority,
            spec="chat_sft_v1",
            example_count=n,
            source=source,
            lineage={"epochs": epochs},
        )
        return quest.id
    finally:
        realm.store.close()


def drop(home: Path, name: str, n: int, priority: str | None = None) -> None:
    """A player's file into the inbox, sidecar first, the data file renamed in whole."""
    inbox = home / "inbox"
    inbox.mkdir(exist_ok=True)
    if priority:
        (inbox / f"{name}.meta.json").write_text(json.dumps({"priority": priority}))
    tmp = write_jsonl(inbox / f".{name}.part", chats(n, "p"))
    tmp.rename(inbox / name)


def fight_with_drop(home: Path, drop_priority: str | None = None, env=None):
    """Start the arena on the queued quest; pause it after two steps, drop a player's quest,
    resume, and let the arena run until the queue is empty. (process, dropped quest id)."""
    proc = start_arena(home, "--until-idle", env=env)
    wait_until(lambda: len(events(home, "step")) >= 2, 120, "two steps on the first quest", proc=proc)
    send_command(home, "pause")
    wait_until(lambda: events(home, "trainer.paused"), 60, "the pause", proc=proc)
    drop(home, "player.jsonl", 60, drop_priority)
    rows = wait_until(
        lambda: query(home, "SELECT id FROM quests WHERE name = 'player.jsonl' AND status = 'queued'"),
        60,
        "the dropped quest queued",
        proc=proc,
    )
    send_command(home, "resume")
    proc.wait(timeout=300)
    return proc, rows[0]["id"]


def battles(home: Path) -> list[tuple[int, dict]]:
    return [(e["quest_id"], e["resumed_at"]) for e in events(home, "battle.start")]


def step_quests(home: Path) -> list[int]:
    """The quest of each step, runs collapsed: [idle, player, idle] for one switch and back."""
    runs: list[int] = []
    for e in events(home, "step"):
        if not runs or runs[-1] != e["quest_id"]:
            runs.append(e["quest_id"])
    return runs


def assert_each_example_once_per_epoch(home: Path, steps: list[dict]) -> int:
    """From the steps' spans: each quest's training examples, each trained exactly `epochs` times.
    Returns the examples trained."""
    starts = {e["quest_id"]: e for e in events(home, "battle.start")}
    trained: dict[int, list[int]] = {}
    for e in steps:
        epoch, start, end = e["span"]
        n_train = starts[e["quest_id"]]["train_examples"]
        order = QuestData.epoch_order(SimpleNamespace(train=[None] * n_train), SEED, e["quest_id"], epoch)
        trained.setdefault(e["quest_id"], []).extend(order[start:end])
    for qid, indices in trained.items():
        n_train, epochs = starts[qid]["train_examples"], starts[qid]["epochs"]
        assert Counter(indices) == dict.fromkeys(range(n_train), epochs), f"quest {qid}"
    return sum(len(v) for v in trained.values())


def newest_loop_state(home: Path) -> dict:
    folders = [p for p in (home / "models").iterdir() if (p / ".ledger.json").is_file()]
    newest = max(folders, key=lambda p: int(p.name.split("-")[1]))
    return json.loads((newest / "trainer_state.json").read_text())


@pytest.mark.slow
def test_a_dropped_quest_takes_over_and_the_idle_quest_resumes_at_its_offset(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    tiny_config(home, save_steps=1000)  # no checkpoint mid-battle: the switch keeps the loop state
    idle = queue_quest(home, "guild-idle.jsonl", 240, source="guild", priority="low", epochs=2)
    # The arena is killed right after the dropped quest's battle: its end checkpoint is the only one,
    # and the restart resumes the idle quest by the crash path, from that checkpoint's record.
    proc, player = fight_with_drop(home, env={"REALM_TEST_CRASH_AT": "between_quests@1"})
    assert proc.returncode == -signal.SIGKILL, proc.stdout.read()

    (pre,) = events(home, "battle.preempted")
    assert (pre["quest_id"], pre["by"]) == (idle, player)
    # The next step trained the dropped quest.
    assert step_quests(home) == [idle, player]
    first_on_player = next(e for e in events(home, "step") if e["quest_id"] == player)
    assert first_on_player["step"] == pre["step"] + 1
    (requeued,) = events(home, "quest.requeued")
    assert (requeued["quest_id"], requeued["offset"], requeued["epoch"]) == (
        idle,
        pre["offset"],
        pre["epoch"],
    )
    state = newest_loop_state(home)
    assert state["suspended"] == {str(idle): [pre["epoch"], pre["offset"]]}

    proc = arena(home, "--until-idle")
    assert proc.returncode == 0, proc.stderr[-2000:]
    # The idle quest resumed at the offset it reached, and completed.
    assert battles(home) == [
        (idle, {"epoch": 0, "offset": 0}),
        (player, {"epoch": 0, "offset": 0}),
        (idle, {"epoch": pre["epoch"], "offset": pre["offset"]}),
    ]
    assert step_quests(home) == [idle, player, idle]
    # No example trained twice, none skipped: epochs x examples of each quest, step by step.
    steps = events(home, "step")
    assert [e["step"] for e in steps] == list(range(1, len(steps) + 1))  # every step reported, once
    total = assert_each_example_once_per_epoch(home, steps)
    assert query(home, "SELECT id, status FROM quests ORDER BY id") == [
        {"id": idle, "status": "completed"},
        {"id": player, "status": "completed"},
    ]
    final = newest_loop_state(home)
    assert final["examples_trained"] == total and final["completed_quests"] == 2
    assert "suspended" not in final  # nothing left suspended once the idle quest completed


@pytest.mark.slow
def test_never_lets_the_idle_battle_finish_first(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    tiny_config(home, save_steps=1000)
    set_preempt(home, "never")
    idle = queue_quest(home, "guild-idle.jsonl", 120, source="guild", priority="low", epochs=2)
    proc, player = fight_with_drop(home)
    assert proc.returncode == 0, proc.stdout.read()
    assert not events(home, "battle.preempted")
    assert step_quests(home) == [idle, player]
    assert battles(home) == [(idle, {"epoch": 0, "offset": 0}), (player, {"epoch": 0, "offset": 0})]


@pytest.mark.slow
def test_priority_lets_a_high_quest_preempt_a_low_player_quest(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    tiny_config(home, save_steps=1000)
    set_preempt(home, "priority")
    low = queue_quest(home, "low.jsonl", 160, source="inbox", priority="low", epochs=2)
    proc, high = fight_with_drop(home, drop_priority="high")
    assert proc.returncode == 0, proc.stdout.read()
    (pre,) = events(home, "battle.preempted")
    assert (pre["quest_id"], pre["by"]) == (low, high)
    assert step_quests(home) == [low, high, low]
    assert_each_example_once_per_epoch(home, events(home, "step"))


def test_claim_order_and_preemption_are_one_rule(realm):
    """Under idle and priority a player's quest is claimed before a guild quest, and a quest
    preempts exactly when it is what would be claimed instead (so the two never ping-pong)."""
    queue = QuestQueue(realm.home, realm.store, realm.events)

    def add(name: str, source: str, priority: str) -> int:
        src = write_jsonl(realm.home.root / f".{name}", chats(3, name[:2]))
        return queue.enqueue(src, name=name, priority=priority, spec="chat_sft_v1", source=source).id

    guild_high = add("g-high.jsonl", "guild", "high")
    player_low = add("p-low.jsonl", "inbox", "low")
    player_high = add("p-high.jsonl", "upload", "high")
    q = {i: queue.get(i) for i in (guild_high, player_low, player_high)}
    assert queue.peek_next("never").id == guild_high  # priority alone: the old order
    assert queue.peek_next("idle").id == player_high
    assert outranks(q[player_low], q[guild_high], "idle")
    assert not outranks(q[player_high], q[player_low], "idle")  # idle: only over guild quests
    assert outranks(q[player_high], q[player_low], "priority")
    assert not outranks(q[guild_high], q[player_low], "priority")  # a guild quest never outranks a player
    assert not any(outranks(a, b, "never") for a in q.values() for b in q.values())

    # A preempted quest goes back to the front of its priority, with its offset, by recover()'s move.
    claimed = queue.claim_next("idle")
    assert claimed.id == player_high and claimed.path.parent.name == "processing"
    back = queue.requeue(player_high, 17, 1, by=None)
    assert (back.status, back.progress_offset, back.progress_epoch) == ("queued", 17, 1)
    assert back.path.parent.name == "high" and back.path.is_file()
    assert queue.claim_next("idle").id == player_high
