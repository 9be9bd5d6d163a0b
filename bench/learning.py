"""How fast does DIO master a skill (BIN by default)? Runs the real arena daemon headless from a fresh home.

    .venv/bin/python bench/learning.py [--skill bin] [--levels 3] [--budget-min 30] [--home DIR] [--set KEY=VALUE ...]

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
        "hero": yaml.safe_load((REPO / config["hero"]["config"]).read_text())["model"],
        "training": config["training"],
        "guild": config["guild"],
        "arena_exit_code": proc.returncode,
        "home": str(home),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skill", default="bin", help="the guild skill to train and watch (bin or sy)")
    ap.add_argument("--levels", type=int, default=3, help="stop once this level of the skill is mastered")
    ap.add_argument("--budget-min", type=float, default=30.0, help="give up after this many minutes")
    ap.add_argument("--home", type=Path, default=None, help="realm home (default: a fresh temp dir)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    args = ap.parse_args()
    overrides = {**DEFAULTS, "guild.skills": [args.skill]}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = parse_value(value)
    home = args.home or Path(tempfile.mkdtemp(prefix="realm-learning-"))
    home.mkdir(parents=True, exist_ok=True)
    result = run(home, args.skill, args.levels, args.budget_min * 60, overrides)
    print(json.dumps(result, indent=2))
    return 0 if result["reached"] else 1


if __name__ == "__main__":
    sys.exit(main())
