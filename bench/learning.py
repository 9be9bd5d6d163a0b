"""How fast does DIO master a skill (BIN by default)? Runs the real arena daemon headless from a fresh home.

    .venv/bin/python bench/learning.py [--skill bin] [--levels 3] [--budget-min 30] [--home DIR] [--set KEY=VALUE ...]
    .venv/bin/python bench/learning.py --fresh-default [--budget-min 20]

`--fresh-default` is what a new player gets: the repo's default config (every skill it lists, its
eval cadence) in a fresh home, started with `realm up` (every local service, on free ports), timed from
that command to the first skill level-up, which must also show in the Tavern (`GET /api/skills`);
it keeps running to the budget and reports the levels every skill reached by then.
A single-skill run (`--skill`) trains that skill even where the default realm would not schedule it
for this hero (guild.train_unready), since asking for it is the point.

No files are dropped: the guild writes idle quests, the arena trains on them, evals run every
`training.eval_every` steps, and a level is mastered when the mean of the last 3 evals reaches 0.8.
The bench watches the `skills` table, stops the daemon through battle control when the target level
is mastered (or the budget runs out), and prints JSON: wall minutes and steps at which each level of the skill
was mastered, and the hero and training config used. Exit code 0 when the target was reached, 1 if not.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# Realm settings for the run; --set overrides any of them. The rest are the repo's defaults.
DEFAULTS = {
    "training.eval_every": 100,
    "training.save_steps": 1000,
}


def parse_value(text: str):
    return yaml.safe_load(text)


def run(home: Path, skill: str, levels: int, budget_s: float, overrides: dict) -> dict:
    from bench._common import write_home_config
    from sentinels.realm import Realm

    config = write_home_config(home, overrides)
    realm = Realm.open(home)
    realm.init()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("REALM_HOME", None)
    log_path = home / "logs" / "arena-bench.out"
    t0 = time.time()
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, str(REPO / "realm.py"), "arena", "--home", str(home)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
        )
    mastered_at: dict[int, dict] = {}
    reached = False
    try:
        while time.time() - t0 < budget_s:
            if proc.poll() is not None:
                break
            row = realm.store.one("SELECT mastered_level FROM skills WHERE id = ?", [skill])
            level = row["mastered_level"] if row else 0
            for ev in realm.events.since(0, kinds=["skill.level_up"], limit=100):
                lvl = int(ev.payload.get("level", 0))
                if ev.payload.get("skill") == skill and lvl not in mastered_at:
                    mastered_at[lvl] = {
                        "wall_min": round((ev.ts - t0) / 60, 2),
                        "step": ev.payload.get("step"),
                    }
            if level >= levels:
                reached = True
                break
            time.sleep(2)
    finally:
        from arena import control

        if proc.poll() is None:
            control.send(realm.store, realm.events, "stop")
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    evals = realm.store.query("SELECT step, level, accuracy FROM evals WHERE skill = ? ORDER BY id", [skill])
    last_step = realm.store.get_state("battle", {}).get("step")
    rates = sorted(
        e.payload["tokens_per_s"]
        for e in realm.events.since(0, kinds=["step"], limit=1_000_000)
        if e.payload.get("tokens_per_s")
    )
    return {
        "bench": "learning",
        "skill": skill,
        "target_level": levels,
        "reached": reached,
        "budget_min": round(budget_s / 60, 1),
        "wall_min_total": round((time.time() - t0) / 60, 2),
        "last_step": last_step,
        "mastered": {str(k): v for k, v in sorted(mastered_at.items())},
        "evals": len(evals),
        "eval_trace": [(e["step"], e["level"], round(e["accuracy"], 2)) for e in evals][-30:],
        "precision": _precision(home),
        "tokens_per_s_median": rates[len(rates) // 2] if rates else None,
        "hero": yaml.safe_load((REPO / config["hero"]["config"]).read_text())["model"],
        "training": config["training"],
        "guild": config["guild"],
        "arena_exit_code": proc.returncode,
        "home": str(home),
    }


def _precision(home: Path) -> str | None:
    """What the arena trained in, from its log: the CPU auto probe's choice, else the accelerator's."""
    log = home / "logs" / "arena.log"
    lines = log.read_text(errors="replace").splitlines() if log.is_file() else []
    for marker in ("training precision on CPU: ", "(precision "):
        for line in reversed(lines):
            if marker in line:
                found = line.split(marker, 1)[1]
                found = found.removesuffix(")") if marker.startswith("(") else found
                return "fp32" if found == "no" else found
    return None


def run_fresh_default(home: Path, budget_s: float, overrides: dict) -> dict:
    """`realm up` on a fresh home with the default config (ports aside); see the module docstring."""
    import requests

    from bench._common import free_ports, write_home_config
    from sentinels.realm import Realm

    ports = dict(zip(("tavern", "oracle", "vault", "officer"), free_ports(4), strict=True))
    config = write_home_config(home, {**{f"ports.{k}": v for k, v in ports.items()}, **overrides})
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("REALM_HOME", None)
    realm_cmd = [sys.executable, str(REPO / "realm.py")]
    t0 = time.time()
    subprocess.run([*realm_cmd, "up", "--home", str(home)], env=env, cwd=REPO, check=True, timeout=180)
    realm = Realm.open(home)
    first: dict | None = None
    tavern_first: dict | None = None
    try:
        while time.time() - t0 < budget_s:
            if first is None:
                ev = next(iter(realm.events.since(0, kinds=["skill.level_up"], limit=1)), None)
                if ev is not None:
                    first = {
                        "skill": ev.payload.get("skill"),
                        "level": ev.payload.get("level"),
                        "step": ev.payload.get("step"),
                        "wall_min": round((ev.ts - t0) / 60, 2),
                    }
            if tavern_first is None:
                try:
                    cards = requests.get(f"http://127.0.0.1:{ports['tavern']}/api/skills", timeout=5).json()
                    shown = [c for c in cards["skills"] if c["level"] >= 1]
                    if shown:
                        tavern_first = {
                            "skill": shown[0]["id"],
                            "wall_min": round((time.time() - t0) / 60, 2),
                        }
                except (requests.RequestException, ValueError, KeyError):
                    pass
            time.sleep(2)
        cards = requests.get(f"http://127.0.0.1:{ports['tavern']}/api/skills", timeout=10).json()["skills"]
    finally:
        subprocess.run([*realm_cmd, "down", "--home", str(home)], env=env, cwd=REPO, timeout=180)
    levels = {c["id"]: {"level": c["level"], "waiting": c.get("waiting"), "evals": c["evals"]} for c in cards}
    ups = [
        {
            "skill": e.payload.get("skill"),
            "level": e.payload.get("level"),
            "step": e.payload.get("step"),
            "wall_min": round((e.ts - t0) / 60, 2),
        }
        for e in realm.events.since(0, kinds=["skill.level_up"], limit=1000)
    ]
    quests = realm.store.query(
        "SELECT json_extract(action, '$.skill') AS skill, json_extract(action, '$.count') AS count,"
        " json_extract(action, '$.sized_by') AS sized_by, json_extract(action, '$.probe') AS probe"
        " FROM planner_decisions ORDER BY id"
    )
    return {
        "bench": "learning --fresh-default",
        "budget_min": round(budget_s / 60, 1),
        "first_level_up": first,
        "tavern_showed_first_level_up": tavern_first,
        "level_ups": ups,
        "levels_at_end": levels,
        "last_step": realm.store.get_state("battle", {}).get("step"),
        "idle_quests": quests,
        "guild": config["guild"],
        "training": config["training"],
        "home": str(home),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skill", default="bin", help="the guild skill to train and watch (bin or sy)")
    ap.add_argument("--levels", type=int, default=3, help="stop once this level of the skill is mastered")
    ap.add_argument("--budget-min", type=float, default=30.0, help="give up after this many minutes")
    ap.add_argument("--home", type=Path, default=None, help="realm home (default: a fresh temp dir)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    ap.add_argument(
        "--fresh-default",
        action="store_true",
        help="the default realm under `realm up`: time to the first level-up",
    )
    args = ap.parse_args()
    sets = {}
    for item in args.set:
        key, _, value = item.partition("=")
        sets[key] = parse_value(value)
    home = args.home or Path(tempfile.mkdtemp(prefix="realm-learning-"))
    home.mkdir(parents=True, exist_ok=True)
    if args.fresh_default:
        result = run_fresh_default(home, args.budget_min * 60, sets)
        print(json.dumps(result, indent=2))
        return 0 if result["first_level_up"] else 1
    overrides = {**DEFAULTS, "guild.skills": [args.skill], "guild.train_unready": True, **sets}
    result = run(home, args.skill, args.levels, args.budget_min * 60, overrides)
    print(json.dumps(result, indent=2))
    return 0 if result["reached"] else 1


if __name__ == "__main__":
    sys.exit(main())
