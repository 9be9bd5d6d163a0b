"""The Armory: view and edit the realm config through the realm's own validator.

The effective file is `<home>/realm.yaml` when present, else the repo's `configs/realm.yaml`.
Edits are validated by `sentinels.config.parse_config` (the same gate as start-up) and written to
`<home>/realm.yaml` only (temp file + rename), so the repo's defaults are never touched. Changed
keys under `RESTART_KEYS` are reported as needing a restart; the rest apply when a service next
reads its config. A structured edit (`{"config": {...}}`) is partial: it names only the keys to
change, is deep-merged into the effective file's data before validation (so a section set to null
is refused like any bad value), and is written into a round-trip load (ruamel.yaml) of that file, so
comments, key order and every key it does not name stay. A YAML text edit (`{"yaml": "..."}`) is
the whole new file, written as typed. A body of the wrong shape is refused with 422 naming the field.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from sentinels.config import DEFAULT_CONFIG, RESTART_KEYS, ConfigError, parse_config, read_yaml
from tavern.errors import ApiError

if TYPE_CHECKING:
    from sentinels.realm import Realm


def config_path(realm: Realm) -> Path:
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


def _effective(realm: Realm) -> dict[str, Any]:
    data = parse_config(read_yaml(config_path(realm)), str(config_path(realm))).to_dict()
    data.pop("home", None)  # the home is chosen by --home / REALM_HOME, not edited here
    return data


def read(realm: Realm) -> dict[str, Any]:
    path = config_path(realm)
    try:
        data = _effective(realm)
    except ConfigError as exc:  # a hand-edited file that no longer loads: name its key, not "internal error"
        raise ApiError(422, str(exc), key=exc.key, problem=exc.problem) from exc
    return {
        "path": str(path),
        "source": "home" if path.parent == realm.home.root else "repo",
        "write_path": str(realm.home.root / "realm.yaml"),
        "config": data,
        "restart_keys": sorted(k for k in _flatten(data) if needs_restart(k)),
        "text": path.read_text(encoding="utf-8"),
    }


HEADER = "# Realm config for this home, written by the Tavern's Armory (validated by sentinels.config).\n"


def _merge(doc: Any, patch: dict[str, Any]) -> None:
    """Set in the round-trip map `doc` what `patch` names, recursing into sections; nothing else moves."""
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(doc.get(key), dict):
            _merge(doc[key], value)
        elif key not in doc or doc[key] != value:
            doc[key] = value


def _deep_merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """A new plain dict: `base` with what `patch` names set (sections merged, other values replaced)."""
    out = dict(base)
    for key, value in patch.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = _deep_merge(out[key], value) if both else value
    return out


def _merged_text(source: str, patch: dict[str, Any]) -> str:
    from ruamel.yaml import YAML

    rt = YAML()  # round-trip mode: comments, order and flow style survive
    rt.representer.add_representer(  # `key: null` as written, not an empty value
        type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    doc = rt.load(source) or {}
    _merge(doc, patch)
    buf = io.StringIO()
    rt.dump(doc, buf)
    return buf.getvalue()


def _refuse(key: str, problem: str) -> ApiError:
    return ApiError(422, f"request body: key '{key}': {problem}", key=key, problem=problem)


def _candidate(realm: Realm, body: dict[str, Any]) -> tuple[Any, str]:
    """(the data to validate, the text to save) for a YAML text edit or a structured partial edit."""
    if "yaml" in body:
        if not isinstance(body["yaml"], str):
            raise _refuse(
                "yaml", f"expected a string (the whole realm.yaml text), got {type(body['yaml']).__name__}"
            )
        try:
            data = yaml.safe_load(body["yaml"]) or {}
        except yaml.YAMLError as exc:
            raise ApiError(422, f"not valid YAML: {exc}", key="<file>") from exc
        return data, body["yaml"]  # a text edit replaces the home file, written as typed
    patch = body["config"]
    if not isinstance(patch, dict):
        raise _refuse("config", f"expected a mapping of the keys to change, got {type(patch).__name__}")
    patch = {k: v for k, v in patch.items() if k != "home"}  # the home is chosen by --home / REALM_HOME
    source = config_path(realm)
    # A structured edit is partial: it changes only the keys it names, in the effective file's data.
    return _deep_merge(read_yaml(source) or {}, patch), _merged_text(
        source.read_text(encoding="utf-8"), patch
    )


def write(realm: Realm, body: Any) -> dict[str, Any]:
    """Validate and save a config edit; body is {"config": {...partial...}} or {"yaml": "..."}.

    `config` names only the keys to change (sections merge, a section cannot be null); `yaml` is the
    whole new text of the home's realm.yaml. Refusals are 422 naming the key; nothing is written.
    """
    if not isinstance(body, dict) or not ({"config", "yaml"} & body.keys()):
        raise ApiError(400, 'send JSON {"config": {...}} or {"yaml": "..."}')
    target = realm.home.root / "realm.yaml"
    try:
        # The current file is read too (a partial edit merges into it): a broken one is named here.
        data, text = _candidate(realm, body)
        if isinstance(data, dict):
            data.pop("home", None)
        parsed = parse_config(data, str(target))
    except ConfigError as exc:
        raise ApiError(422, str(exc), key=exc.key, problem=exc.problem) from exc
    try:
        old = _flatten(_effective(realm))
    except ConfigError:  # the file being replaced did not load: every key counts as changed
        old = {}
    new = _flatten({k: v for k, v in parsed.to_dict().items() if k != "home"})
    changed = sorted(k for k in new if old.get(k) != new[k])
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
