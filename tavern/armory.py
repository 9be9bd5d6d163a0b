"""The Armory: view and edit the realm config through the realm's own validator.

The effective file is `<home>/realm.yaml` when present, else the repo's `configs/realm.yaml`.
Edits are validated by `sentinels.config.parse_config` (the same gate as start-up) and written to
`<home>/realm.yaml` only (temp file + rename), so the repo's defaults are never touched. Changed
keys under `RESTART_KEYS` are reported as needing a restart; the rest apply when a service next
reads its config. Saving keeps the file's comments and key order: a YAML text edit is written as
typed, and a structured edit is merged into a round-trip load (ruamel.yaml) of the effective file,
so only changed values move.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import yaml

from sentinels.config import DEFAULT_CONFIG, RESTART_KEYS, ConfigError, parse_config, read_yaml
from tavern.errors import ApiError


def config_path(realm: Any) -> Path:
    home_file = realm.home.root / "realm.yaml"
    return home_file if home_file.is_file() else DEFAULT_CONFIG


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict):
            out.update(_flatten(v, key))
        else:
            out[key] = list(v) if isinstance(v, tuple) else v
    return out


def needs_restart(key: str) -> bool:
    return any(key == r or key.startswith(r + ".") for r in RESTART_KEYS)


def _effective(realm: Any) -> dict[str, Any]:
    data = parse_config(read_yaml(config_path(realm)), str(config_path(realm))).to_dict()
    data.pop("home", None)  # the home is chosen by --home / REALM_HOME, not edited here
    return data


def read(realm: Any) -> dict[str, Any]:
    path = config_path(realm)
    data = _effective(realm)
    return {
        "path": str(path),
        "source": "home" if path.parent == realm.home.root else "repo",
        "write_path": str(realm.home.root / "realm.yaml"),
        "config": data,
        "restart_keys": sorted(k for k in _flatten(data) if needs_restart(k)),
        "text": path.read_text(encoding="utf-8"),
    }


HEADER = "# Realm config for this home, written by the Tavern's Armory (validated by sentinels.config).\n"


def _merge(doc: Any, data: dict[str, Any]) -> None:
    """Make the round-trip map `doc` hold `data`, touching only what differs."""
    for key in [k for k in doc if k not in data]:
        del doc[key]
    for key, value in data.items():
        if isinstance(value, dict) and isinstance(doc.get(key), dict):
            _merge(doc[key], value)
        elif key not in doc or doc[key] != value:
            doc[key] = value


def _merged_text(source: str, data: dict[str, Any]) -> str:
    from ruamel.yaml import YAML

    rt = YAML()  # round-trip mode: comments, order and flow style survive
    rt.representer.add_representer(  # `key: null` as written, not an empty value
        type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    doc = rt.load(source) or {}
    _merge(doc, data)
    buf = io.StringIO()
    rt.dump(doc, buf)
    return buf.getvalue()


def write(realm: Any, body: Any) -> dict[str, Any]:
    """Validate and save a new config; body is {"config": {...}} or {"yaml": "..."}."""
    if not isinstance(body, dict) or not ({"config", "yaml"} & body.keys()):
        raise ApiError(400, 'send JSON {"config": {...}} or {"yaml": "..."}')
    if "yaml" in body:
        try:
            data = yaml.safe_load(body["yaml"]) or {}
        except yaml.YAMLError as exc:
            raise ApiError(422, f"not valid YAML: {exc}", key="<file>") from exc
    else:
        data = body["config"]
    if isinstance(data, dict):
        data.pop("home", None)
    target = realm.home.root / "realm.yaml"
    try:
        parsed = parse_config(data, str(target))
    except ConfigError as exc:
        raise ApiError(422, str(exc), key=exc.key, problem=exc.problem) from exc
    old = _flatten(_effective(realm))
    new = _flatten({k: v for k, v in parsed.to_dict().items() if k != "home"})
    changed = sorted(k for k in new if old.get(k) != new[k])
    if "yaml" in body:
        text = body["yaml"]
    else:
        text = _merged_text(config_path(realm).read_text(encoding="utf-8"), data)
    if not text.startswith(HEADER):
        text = HEADER + text
    tmp = target.with_name(".realm.yaml.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, target)
    return {
        "saved": True,
        "path": str(target),
        "changed": changed,
        "restart_needed": [k for k in changed if needs_restart(k)],
    }
