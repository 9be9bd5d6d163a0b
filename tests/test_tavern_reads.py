"""The Tavern honours guild.skills_dir. (That the Tavern runs no SQL on other rooms' tables is part of
tests/test_room_sql.py, which scans every room.)"""

from __future__ import annotations

import shutil

import requests
import yaml

from tests.helpers import REPO, free_port, start_tavern, stop, write_home_config


def test_skills_come_from_the_configured_skills_dir(home, tmp_path):
    skills = tmp_path / "my-skills"
    skills.mkdir()
    for name in ("bin.yaml", "sy.yaml"):
        shutil.copy(REPO / "configs" / "skills" / name, skills / name)
    rune = yaml.safe_load((REPO / "configs" / "skills" / "bin.yaml").read_text())
    rune.update(id="rune", name="Rune Reading", icon="ᚱ", color="#123456", max_level=7)
    rune["generator"]["name"] = "bin"
    (skills / "rune.yaml").write_text(yaml.safe_dump(rune, allow_unicode=True), encoding="utf-8")
    write_home_config(home, {"guild.skills_dir": str(skills)})

    port = free_port()
    proc = start_tavern(home, port)
    try:
        cards = {
            c["id"]: c
            for c in requests.get(f"http://127.0.0.1:{port}/api/skills", timeout=10).json()["skills"]
        }
        assert {"bin", "sy", "rune"} <= set(cards)
        assert (cards["rune"]["name"], cards["rune"]["max_level"], cards["rune"]["color"]) == (
            "Rune Reading",
            7,
            "#123456",
        )
        assert (cards["rune"]["level"], cards["rune"]["working_level"]) == (0, 1)
        ev = requests.get(f"http://127.0.0.1:{port}/api/skills/rune/evals", timeout=10)
        assert ev.status_code == 200 and ev.json()["skill"]["name"] == "Rune Reading"
    finally:
        stop(proc)
