"""`realm hero ...`: the heroes a realm can train, and merged exports of trained ones.

    realm hero list [--json]                       DIO and every preset: size, profile, memory, folder
    realm hero show NAME [--json]                  one preset in full, and what `auto` picks here, why
    realm hero export CHECKPOINT --merge OUT       a full model folder (adapters merged into the base)

Presets come from arena/presets.py, the memory numbers and the choice from arena/profiles.py, the
merge from arena/adapters.py; this module only presents them. Must not train, download, or write
anywhere but the export's OUT folder.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from arena.presets import fmt_params
from sentinels.clikit import home_option, realm_from
from sentinels.config import REPO_ROOT

if TYPE_CHECKING:
    from sentinels.realm import Realm


@click.group()
def hero():
    """Hero presets, memory profiles and merged exports."""


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _rows(realm: Realm) -> list[dict[str, Any]]:
    """DIO first (the default), then every preset, as plain dicts."""
    from arena.presets import list_presets
    from arena.profiles import count_params_dio, estimate_bytes

    cfg = realm.config.hero
    dio_n = count_params_dio(cfg, REPO_ROOT)
    rows: list[dict[str, Any]] = [
        {
            "name": "dio",
            "label": "DIO",
            "default": True,
            "active": not cfg.preset and not cfg.base_model,
            "params": dio_n,
            "profile": "full",
            "needs": {"full_gb": round(estimate_bytes("full", dio_n, "cpu") / 1e9, 1)},
            "model_dir": None,
            "folder_present": True,  # built from its description: nothing to fetch
            "hf_repo": None,
            "description": f"the embedded default hero, built from {cfg.config} (no download)",
        }
    ]
    for p in list_presets(REPO_ROOT):
        rows.append(
            {
                "name": p.name,
                "label": p.label,
                "default": False,
                "active": cfg.preset == p.name,
                "params": int(p.body.params),
                "profile": p.body.profile,
                "needs": {k: getattr(p.body.needs, k) for k in ("full_gb", "lora_gb", "qlora_gb")},
                "model_dir": str(p.folder(REPO_ROOT)),
                "folder_present": p.folder_present(REPO_ROOT),
                "hf_repo": p.body.hf_repo,
                "description": p.body.description,
            }
        )
    return rows


def _presets_or_exit(fn, *args):
    from arena.presets import PresetError

    try:
        return fn(*args)
    except PresetError as exc:
        click.echo(f"hero: {exc}", err=True)
        sys.exit(2)


@hero.command("list")
@home_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def list_cmd(ctx, home, as_json):
    """DIO and every preset: parameters, recommended profile, memory needs, folder present."""
    rows = _presets_or_exit(_rows, realm_from(ctx, home))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(
        f"  {'NAME':<16} {'PARAMS':>7}  {'PROFILE':<7} {'FULL GB':>8} {'LORA GB':>8} {'QLORA GB':>8}  FOLDER"
    )
    for r in rows:
        needs = r["needs"]
        cells = [
            f"{needs[k]:>8.1f}" if k in needs else f"{'-':>8}" for k in ("full_gb", "lora_gb", "qlora_gb")
        ]
        name = r["name"] + (" (default)" if r["default"] else "")
        where = "built in" if r["model_dir"] is None else ("present " if r["folder_present"] else "missing ")
        where += "" if r["model_dir"] is None else f" {r['model_dir']}"
        mark = "*" if r["active"] else " "
        click.echo(
            f"{mark} {name:<16} {fmt_params(r['params']):>7}  {r['profile']:<7} {' '.join(cells)}  {where}"
        )
    click.echo("* the realm's hero; memory needs are estimates on a CUDA GPU (arena/profiles.py)")


def _show(realm: Realm, name: str) -> dict[str, Any]:
    from arena.presets import get_preset
    from arena.profiles import (
        ProfileError,
        choose_profile,
        count_params_dio,
        count_params_in_folder,
        estimates,
        free_memory,
    )

    device = _device()
    free = free_memory(device)
    if name.lower() in ("dio", realm.config.hero.name.lower()):
        n = count_params_dio(realm.config.hero, REPO_ROOT)
        return {
            "name": "dio",
            "label": "DIO",
            "description": "the embedded default hero, built from its description (no download)",
            "config": realm.config.hero.config,
            "params": n,
            "params_source": "built from the description",
            "device": device,
            "free_bytes": free,
            "estimates": estimates(n, device),
            "auto": {"kind": "full", "reason": "DIO is built from its description and always trains in full"},
        }
    preset = get_preset(name, REPO_ROOT)
    out = preset.to_dict(REPO_ROOT)
    present = out["folder_present"]
    n = count_params_in_folder(preset.folder(REPO_ROOT)) if present else int(preset.body.params)
    out.update(
        params=n,
        params_source="counted from the folder's config.json" if present else "the preset's estimate",
        device=device,
        free_bytes=free,
        estimates=estimates(n, device),
    )
    # auto: the memory choice alone; recommended: the preset's profile with its optimizer, as it would run.
    for key, requested, optimizer in (
        ("auto", "auto", "adamw"),
        ("recommended", preset.body.profile, preset.body.optimizer or "adamw"),
    ):
        try:
            choice = choose_profile(
                requested, n_params=n, device=device, free_bytes=free, optimizer=optimizer
            )
            out[key] = {"kind": choice.kind, "reason": choice.reason}
        except ProfileError as exc:
            out[key] = {"kind": None, "reason": str(exc)}
    if not present:
        out["fetch"] = (
            f"nothing is downloaded at run time: huggingface-cli download {preset.body.hf_repo} "
            f"--local-dir {out['model_dir']}"
        )
    return out


@hero.command("show")
@click.argument("name")
@home_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def show_cmd(ctx, name, home, as_json):
    """One preset (or dio) in full, its folder, and the profile auto would choose here, and why."""
    info = _presets_or_exit(_show, realm_from(ctx, home), name)
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
        return
    from arena.profiles import gb

    click.echo(
        f"{info['name']}  {info['label']}  {fmt_params(info['params'])} parameters ({info['params_source']})"
    )
    click.echo(f"  {info['description']}")
    if "model_dir" in info:
        click.echo(
            f"  folder       {info['model_dir']} ({'present' if info['folder_present'] else 'missing'})"
        )
        click.echo(f"  hf repo      {info['hf_repo']}  (fetch it yourself)")
        chat = info["chat_template"] or "the folder tokenizer's own"
        click.echo(f"  chat         {chat}")
        click.echo(f"  profile      {info['profile']} (recommended)")
        lora = info.get("lora") or {}
        if lora:
            click.echo(
                f"  lora         rank {lora['rank']}, alpha {lora['alpha']}, dropout {lora['dropout']},"
                f" targets {', '.join(lora['target_modules'])}"
            )
        options = [
            f"{k} {str(info[k]).lower()}"
            for k in ("gradient_checkpointing", "optimizer")
            if info.get(k) is not None
        ]
        if options:
            click.echo(f"  options      {', '.join(options)}")
        training = info.get("training") or {}
        if training:
            click.echo("  training     " + ", ".join(f"{k} {v}" for k, v in training.items()))
    est = info["estimates"]
    click.echo(
        f"  memory       {', '.join(f'{k} {gb(v)}' for k, v in est.items() if v is not None)}"
        f" on {info['device']}; {gb(info['free_bytes'])} free"
    )
    click.echo(f"  auto here    {info['auto']['kind'] or 'refused'}: {info['auto']['reason']}")
    if "recommended" in info:
        rec = info["recommended"]
        click.echo(f"  recommended  {rec['kind'] or 'refused'}: {rec['reason']}")
    if "fetch" in info:
        click.echo(f"  fetch        {info['fetch']}")


def resolve_checkpoint_folder(realm: Realm, ref: str) -> Path:
    """The checkpoint folder `ref` names: a folder path, or what the ledger resolves (a step,
    `step-1200`, a canonical name, an alias, `latest`, each with an optional `dio@` prefix)."""
    from vault.ledger import Ledger

    path = Path(ref).expanduser()
    if path.is_dir():
        return path.resolve()
    text = ref.strip()
    hero_name, at, rest = text.partition("@")
    if at and hero_name.lower() == realm.config.hero.name.lower():
        text = rest
    realm.ensure()
    row = Ledger(realm.store).get(text)
    if row is None:
        raise click.ClickException(
            f"{ref!r} is neither a folder nor a checkpoint the ledger holds (a step, step-N, a canonical "
            f"name, an alias or latest; `realm vault ledger` lists them)"
        )
    for cand in (realm.home.models / row["name"], Path(row["path"])):
        if (cand / "config.json").is_file() or (cand / "adapter_config.json").is_file():
            return cand
    raise click.ClickException(f"{ref!r} names {row['name']}, whose folder is gone from {realm.home.models}")


@hero.command("export")
@click.argument("checkpoint")
@click.option(
    "--merge",
    "out",
    required=True,
    type=click.Path(file_okay=False),
    help="Write a full model here (LoRA adapters merged into their base) that loads with from_pretrained.",
)
@home_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def export_cmd(ctx, checkpoint, out, home, as_json):
    """Export CHECKPOINT (a folder, or a step/name/alias the ledger resolves) as one full model."""
    from arena.adapters import export_merged
    from arena.hero import HeroError

    realm = realm_from(ctx, home)
    folder = resolve_checkpoint_folder(realm, checkpoint)
    try:
        result = export_merged(folder, Path(out).expanduser())
    except (HeroError, FileExistsError, FileNotFoundError) as exc:
        raise click.ClickException(f"export of {folder}: {exc}") from exc
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
        return
    click.echo(f"exported {folder} to {Path(out).expanduser()}")
    for key, value in (result or {}).items():
        click.echo(f"  {key:<16} {value}")


commands = [hero]
