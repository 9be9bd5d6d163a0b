"""The vault's speed: locate with 100,000 assets (in-process and over HTTP) and a 200 MB push. Prints JSON.

    .venv/bin/python bench/vault.py [--assets 100000] [--push-mb 200] [--runs 7] [--samples 2000]

A fresh home gets `--assets` catalogued assets: 20 real checkpoint folders landed by the vault's own
call (`Ledger.land`), the alias `champion`, and tiny quest-data files registered by
`Catalog.register` (which hashes each one). Then:

- **locate p99** over `--samples` references drawn from ids, steps, canonical names, `latest` and the
  alias, through `VaultKeeper.locate` in this process (target <= 5 ms) and through
  `GET /api/locate/REF` of the real `realm vault serve` with one keep-alive connection (<= 20 ms);
- **push** of one checkpoint of `--push-mb` MB (a small config, tokenizer, trainer state and sidecar,
  the rest in `model.safetensors`) to a branch officer (`realm officer`) on loopback with its base dir on the same
  disk, over the real officer protocol: streamed, sha256-checked by the officer before it is renamed
  into place, and fsynced. Against a plain `cp -r` of the same folder on the same disk in the same
  runs: `--runs` alternating runs (cp first on even runs, push first on odd), each step after an
  `os.sync` (no step pays for another's dirty pages), each moving every byte (the officer's copy and its location row are
  deleted between runs; cp writes a fresh folder). Target: median cp / median push >= 0.5;
- **repeat push** of the same checkpoint: the zone already holds it, nothing moves (<= 0.1 s).

For context the same runs also time `cp` followed by an fsync of every copied file (a push fsyncs
what it writes), sha256 of the checkpoint's files alone (the least time any sha256-verified copy can
take, so cp / sha256 bounds the ratio any verified push can reach here), and a push of the same
checkpoint to a plain folder zone on the same disk (the same verified write, without HTTP).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TARGETS = {
    "locate_in_process_p99_ms": 5.0,
    "locate_http_p99_ms": 20.0,
    "push_ratio": 0.5,
    "repeat_push_s": 0.1,
}
CHECKPOINTS = 20
OFFICER_TOKEN = "bench-officer-token"


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def summary_ms(values: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values]
    return {
        "p50": round(pct(ms, 0.50), 3),
        "p99": round(pct(ms, 0.99), 3),
        "max": round(max(ms), 3),
        "mean": round(statistics.fmean(ms), 3),
        "n": len(ms),
    }


def write_checkpoint(models: Path, step: int, weights_bytes: int) -> tuple[Path, dict]:
    """A checkpoint folder as the trainer writes one, sidecar last; weights are random bytes."""
    name = f"checkpoint-{step}-20260101-{(step // 60) % 24:02d}{step % 60:02d}"
    folder = models / name
    folder.mkdir(parents=True)
    rng = random.Random(step)
    with open(folder / "model.safetensors", "wb") as f:
        left = weights_bytes
        while left > 0:
            n = min(left, 8 << 20)
            f.write(rng.randbytes(n))
            left -= n
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen3", "hidden_size": 192}))
    (folder / "tokenizer.json").write_text(json.dumps({"vocab": [chr(i) for i in range(256)]}))
    (folder / "trainer_state.json").write_text(json.dumps({"step": step}))
    sidecar = {
        "step": step,
        "name": name,
        "timestamp": "2026-01-01T12:00:00+0000",
        "train_loss": 3.0 - step / 100_000,
        "val_loss": 3.1 - step / 100_000,
        "skill_name": "bin",
        "skill_level": 1,
        "has_optimizer": False,
        "ledger_version": 1,
        "size_bytes": weights_bytes,
    }
    (folder / ".ledger.json").write_text(json.dumps(sidecar))
    return folder, sidecar


def populate(keeper, n_assets: int) -> dict:
    t0 = time.perf_counter()
    steps = [1000 * (i + 1) for i in range(CHECKPOINTS)]
    names = []
    for step in steps:
        folder, sidecar = write_checkpoint(keeper.realm.home.models, step, 4096)
        keeper.ledger.land(folder, sidecar, keeper.catalog)
        names.append(folder.name)
    keeper.set_alias("champion", steps[len(steps) // 2], by="bench", reason="bench")
    data = keeper.realm.home.queue / "normal"
    data.mkdir(parents=True, exist_ok=True)
    data_ids = []
    for i in range(n_assets - CHECKPOINTS):
        p = data / f"shard-{i:06d}.jsonl"
        p.write_text(f'{{"text": "shard {i}"}}\n')
        data_ids.append(keeper.catalog.register(p, kind="data").id)
    return {
        "steps": steps,
        "names": names,
        "data_ids": data_ids,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def references(made: dict, n: int, rng: random.Random) -> list[str]:
    """A mix of every form users type: mostly ids, then steps, canonical names, latest, the alias."""
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.70:
            out.append(rng.choice(made["data_ids"]))
        elif r < 0.80:
            out.append(f"checkpoint_{rng.choice(made['steps'])}")
        elif r < 0.88:
            out.append(str(rng.choice(made["steps"])))
        elif r < 0.95:
            out.append(rng.choice(made["names"]))
        else:
            out.append(rng.choice(["latest", "champion"]))
    return out


def locate_in_process(keeper, refs: list[str]) -> list[float]:
    for ref in refs[:50]:  # warm the page cache and the statement cache
        keeper.locate(ref)
    lat = []
    for ref in refs:
        t = time.perf_counter()
        keeper.locate(ref)
        lat.append(time.perf_counter() - t)
    return lat


def locate_http(port: int, refs: list[str]) -> list[float]:
    import requests

    session = requests.Session()
    base = f"http://127.0.0.1:{port}/api/locate/"
    for ref in refs[:50]:
        session.get(base + ref, timeout=30).raise_for_status()
    lat = []
    for ref in refs:
        t = time.perf_counter()
        r = session.get(base + ref, timeout=30)
        r.json()
        lat.append(time.perf_counter() - t)
        r.raise_for_status()
    return lat


def spawn(argv: list[str], env: dict) -> subprocess.Popen:
    from bench._common import clean_env

    return subprocess.Popen(
        argv, cwd=REPO, env=clean_env(env), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def timed_cp(src: Path, dst: Path, *, durable: bool = False) -> float:
    """`cp -r src dst` (dst fresh), then with `durable` an fsync of every copied file, as a push does."""
    t = time.perf_counter()
    subprocess.run(["cp", "-r", str(src), str(dst)], check=True)
    if durable:
        subprocess.run(["sync", *[str(p) for p in dst.rglob("*") if p.is_file()]], check=True)
    return time.perf_counter() - t


def timed_sha256(folder: Path) -> float:
    """Hash every file once (1 MiB reads): the least time any sha256-verified copy of it can take."""
    t = time.perf_counter()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h, buf = hashlib.sha256(), bytearray(1 << 20)
            with open(p, "rb", buffering=0) as f:
                while n := f.readinto(buf):
                    h.update(memoryview(buf)[:n])
    return time.perf_counter() - t


def bench_push(keeper, root: Path, push_mb: int, runs: int) -> dict:
    """Push one checkpoint to the officer zone `branch`, `runs` times, against `cp` in the same runs.

    Every step starts after an os.sync (none pays for another's dirty pages), every run sends every byte:
    the officer's copy and its location row are deleted between runs, and cp writes a fresh folder.
    The order alternates (cp first on even runs, push first on odd), so a burst of load from other
    processes lands on both sides alike. Medians are reported; the ratio is cp's over the push's."""
    big, sidecar = write_checkpoint(keeper.realm.home.models, 10_000_000, push_mb * 1_000_000 - 2 * 1024)
    keeper.ledger.land(big, sidecar, keeper.catalog)
    size = sum(p.stat().st_size for p in big.rglob("*") if p.is_file())
    asset_id = keeper.catalog.resolve(big.name).id
    times: dict[str, list[float]] = {k: [] for k in ("cp", "push", "cp_fsync", "sha256", "folder_push")}
    moved: list[int] = []
    statuses: set[str] = set()

    def cp(i: int) -> None:
        times["cp"].append(timed_cp(big, root / f"cp-{i}"))

    def push(i: int) -> None:
        t = time.perf_counter()
        res = keeper.push(big.name, "branch")
        times["push"].append(time.perf_counter() - t)
        moved.append(res.bytes_moved)
        loc = next(x for x in keeper.catalog.locations(asset_id) if x.zone == "branch")
        statuses.add(loc.status)  # written only after the officer matched every sha256

    def cp_fsync(i: int) -> None:
        times["cp_fsync"].append(timed_cp(big, root / f"cp-sync-{i}", durable=True))

    def sha256(i: int) -> None:
        times["sha256"].append(timed_sha256(big))

    def folder_push(i: int) -> None:
        t = time.perf_counter()
        keeper.push(big.name, "folder")
        times["folder_push"].append(time.perf_counter() - t)

    def clean(i: int) -> None:
        for zone in ("branch", "folder"):
            if any(x.zone == zone for x in keeper.catalog.locations(asset_id)):
                keeper.delete(big.name, zone)
        for name in (f"cp-{i}", f"cp-sync-{i}"):
            shutil.rmtree(root / name, ignore_errors=True)

    order = [cp, push, cp_fsync, sha256, folder_push]
    for i in range(runs):
        for step in order if i % 2 == 0 else order[::-1]:
            os.sync()
            step(i)
        clean(i)

    keeper.push(big.name, "branch")  # the repeat below finds it held
    t = time.perf_counter()
    again = keeper.push(big.name, "branch")
    repeat_s = time.perf_counter() - t
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "bytes": size,
        "runs": runs,
        "push_s": round(med["push"], 4),
        "push_mb_s": round(size / med["push"] / 1e6, 1),
        "cp_s": round(med["cp"], 4),
        "ratio_cp_over_push": round(med["cp"] / med["push"], 3),
        "cp_fsync_s": round(med["cp_fsync"], 4),
        "ratio_cp_fsync_over_push": round(med["cp_fsync"] / med["push"], 3),
        "sha256_s": round(med["sha256"], 4),
        "ratio_cp_over_sha256": round(med["cp"] / med["sha256"], 3),
        "folder_zone_push_s": round(med["folder_push"], 4),
        "runs_s": {k: [round(x, 3) for x in v] for k, v in times.items()},
        "every_push_moved_every_byte": moved == [size] * runs and statuses == {"verified"},
        "repeat_push_s": round(repeat_s, 4),
        "repeat_bytes_moved": again.bytes_moved,
        "repeat_status": again.status,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--assets", type=int, default=100_000, help="catalogued assets")
    ap.add_argument("--push-mb", type=int, default=200, help="size of the pushed checkpoint")
    ap.add_argument("--samples", type=int, default=2000, help="locate calls measured per path")
    ap.add_argument("--runs", type=int, default=7, help="alternating runs of cp and push (medians)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    from bench._common import REALM_PY, free_ports, stop, wait_health, wait_until, write_home_config
    from sentinels.realm import Realm
    from vault.keeper import VaultKeeper
    from vault.zones import add_zone

    root = Path(tempfile.mkdtemp(prefix="vault-bench-"))
    home = root / "home"
    home.mkdir()
    write_home_config(home, {"guild.auto_generate": False})
    realm = Realm.open(home)
    realm.init()
    keeper = VaultKeeper(realm)
    rng = random.Random(args.seed)
    out: dict = {"assets": args.assets, "cpus": os.cpu_count(), "targets": TARGETS}
    vault_port, officer_port = free_ports(2)
    env = {"REALM_OFFICER_TOKEN": OFFICER_TOKEN}
    os.environ["REALM_OFFICER_TOKEN"] = OFFICER_TOKEN  # the keeper's side of the officer zone
    procs: list[subprocess.Popen] = []
    try:
        made = populate(keeper, args.assets)
        out["populate_s"] = made["seconds"]
        assert keeper.stats()["assets"] == args.assets
        refs = references(made, args.samples, rng)

        out["locate_in_process_ms"] = summary_ms(locate_in_process(keeper, refs))

        procs.append(
            spawn(
                [
                    sys.executable,
                    str(REALM_PY),
                    "vault",
                    "serve",
                    "--home",
                    str(home),
                    "--port",
                    str(vault_port),
                ],
                env,
            )
        )
        wait_health(vault_port, procs[-1], timeout=120)
        out["locate_http_ms"] = summary_ms(locate_http(vault_port, refs))

        # ---- the push --------------------------------------------------------------------------
        base = root / "officer-base"
        procs.append(
            spawn(
                [
                    sys.executable,
                    str(REALM_PY),
                    "officer",
                    "--zone",
                    "branch",
                    "--port",
                    str(officer_port),
                    "--base-dir",
                    str(base),
                    "--home",
                    str(home),
                ],
                env,
            )
        )
        import requests

        wait_until(
            lambda: _up(requests, f"http://127.0.0.1:{officer_port}/status"),
            60,
            "the officer",
            proc=procs[-1],
        )
        add_zone(realm.store, "branch", f"http://127.0.0.1:{officer_port}")
        (root / "folder-zone").mkdir()
        add_zone(realm.store, "folder", str(root / "folder-zone"))
        out["push"] = bench_push(keeper, root, args.push_mb, args.runs)
    finally:
        for p in procs:
            try:
                stop(p, timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        realm.store.close()
        shutil.rmtree(root, ignore_errors=True)
    out["ok"] = {
        "locate_in_process": out["locate_in_process_ms"]["p99"] <= TARGETS["locate_in_process_p99_ms"],
        "locate_http": out["locate_http_ms"]["p99"] <= TARGETS["locate_http_p99_ms"],
        "push_ratio": out["push"]["ratio_cp_over_push"] >= TARGETS["push_ratio"],
        "every_push_moved_every_byte": out["push"]["every_push_moved_every_byte"],
        "repeat_push": out["push"]["repeat_push_s"] <= TARGETS["repeat_push_s"]
        and out["push"]["repeat_bytes_moved"] == 0,
    }
    print(json.dumps(out, indent=2))


def _up(requests, url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


if __name__ == "__main__":
    main()
