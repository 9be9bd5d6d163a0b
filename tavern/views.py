"""The pages blueprint: the game's HTML pages and the npm packages they import.

Pages are plain HTML + ES modules, no build step. The front-end packages (socket.io-client, uPlot)
come from npm via package.json and are served straight from node_modules under /vendor/, limited to
the files the pages use (never the whole folder).
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, abort, current_app, render_template, send_from_directory

from sentinels.config import REPO_ROOT
from tavern.api.oracle import oracle_api

pages = Blueprint("pages", __name__)

NODE_MODULES = REPO_ROOT / "node_modules"
VENDOR = {
    "socket.io.esm.min.js": "socket.io-client/dist/socket.io.esm.min.js",
    "socket.io.esm.min.js.map": "socket.io-client/dist/socket.io.esm.min.js.map",
    "uPlot.esm.js": "uplot/dist/uPlot.esm.js",
    "uPlot.min.css": "uplot/dist/uPlot.min.css",
}

NAV = [
    ("/", "Tavern", True),
    ("/armory", "Armory", True),
    ("/oracle", "Oracle", True),
    ("/vault", "Vault", True),
]


def _render(template: str, active: str, **ctx):
    realm = current_app.config["REALM"]
    return render_template(template, nav=NAV, active=active, hero_name=realm.config.hero.name, **ctx)


@pages.get("/")
def index():
    return _render("index.html", "/")


@pages.get("/guild/<skill>")
def guild_skill(skill: str):
    return _render("guild.html", "/", skill=skill.lower())


@pages.get("/armory")
def armory():
    return _render("armory.html", "/armory")


@pages.get("/vault")
def vault():
    """The Vault room: checkpoints with their ledger stats, aliases and zones (tavern/api/vault.py)."""
    return _render("vault.html", "/vault")


@pages.get("/oracle")
def oracle():
    """The Oracle room: chat with any checkpoint on any Oracle host (tavern/api/oracle.py proxies)."""
    return _render("oracle.html", "/oracle")


# The room's /oracle/* endpoints sit beside its page (nested, so they register wherever pages does).
pages.register_blueprint(oracle_api)


@pages.get("/vendor/<path:name>")
def vendor(name: str):
    rel = VENDOR.get(name)
    if rel is None:
        abort(404)
    path = NODE_MODULES / rel
    if not path.is_file():
        abort(404, f"{rel} is missing: run `npm install` (make install does) in {REPO_ROOT}")
    return send_from_directory(Path(path).parent, path.name, max_age=3600)
