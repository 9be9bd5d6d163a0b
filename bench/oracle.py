"""Bench: the Oracle against plain `model.generate`, checkpoint switches, loads, concurrency, latency.

    .venv/bin/python bench/oracle.py [--home H] [--out bench-oracle.json]

Without --home it makes one itself (a short real training run: three DIO checkpoints). It starts a real
`realm oracle` on a free loopback port and prints one JSON object:
- `throughput`: generated tokens/s through the server (official `openai` client, streaming, greedy,
  `ignore_eos` so every request generates exactly max_tokens) against `model.generate` in this process
  on the same checkpoint and prompts, one request at a time; `ratio` should be >= 0.9;
- `switch_ms`: median wall time of a 1-token request alternating between two loaded checkpoints,
  minus the same request repeated on one (the switch itself; target <= 50 ms);
- `cold_load_s`: median time of POST /oracle/load for a checkpoint not in memory (target <= 1 s);
- `concurrency`: aggregate tokens/s of 8 concurrent streaming clients against 1;
- `first_token_ms`: p50 and p95 of the time to the first content chunk, one client at a time.
`start_oracle` is also what tests/test_oracle*.py use to run the server.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import REALM_PY, REPO, clean_env, free_port, stop, wait_health  # noqa: E402

PROMPTS = [
    "Compute: add(①⓪①, ①①)",
    "Compute: add(①①①, ①)",
    "Compute: sub(①⓪⓪①, ①⓪)",
    "Hello DIO, who are you?",
]


def start_oracle(home: Path, port: int, *args: str, env: dict | None = None) -> subprocess.Popen:
    """`realm oracle` on a home and loopback port, returned once /health answers. Its console output
    goes to <home>/logs/oracle-console.out (a pipe nobody reads could fill and stall the server)."""
    log_dir = Path(home) / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    out = log_dir / "oracle-console.out"
    with out.open("ab") as sink:
        proc = subprocess.Popen(
            [sys.executable, str(REALM_PY), "oracle", "--home", str(home), "--port", str(port), *args],
            cwd=REPO,
            env=clean_env(env),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_health(port, proc, timeout=120)
    except AssertionError as exc:
        proc.kill()
        raise AssertionError(f"{exc}\n{out.read_text(errors='replace')[-4000:]}") from exc
    return proc


def percentile(values: list[float], q: float) -> float:
    xs = sorted(values)
    return xs[min(len(xs) - 1, max(0, round(q / 100 * (len(xs) - 1))))]


def make_home(root: Path, steps: int = 30) -> Path:
    """A home after a short real training run: DIO checkpoints every 10 steps."""
    import yaml

    from bench._common import bin_chats, enqueue

    home = root / "home"
    home.mkdir(parents=True)
    training = {
        "batch_size": 2,
        "max_length": 128,
        "save_steps": 10,
        "keep_last": 5,
        "warmup_steps": 5,
        "eval_every": 1000,
        "threads": 1,
    }
    (home / "realm.yaml").write_text(
        yaml.safe_dump({"training": training, "guild": {"auto_generate": False}})
    )
    enqueue(home, "bin_add.jsonl", bin_chats(200))
    proc = subprocess.run(
        [sys.executable, str(REALM_PY), "arena", "--max-steps", str(steps), "--home", str(home)],
        cwd=REPO,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode != 0:
        raise SystemExit(f"training run failed:\n{proc.stdout}\n{proc.stderr}")
    return home


class Bench:
    def __init__(self, url: str, max_tokens: int):
        import openai

        self.url, self.max_tokens = url, max_tokens
        self.client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=5, timeout=600)

    def chat(self, model: str, prompt: str, max_tokens: int | None = None):
        return self.client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": prompt}],
            temperature=0,
            max_tokens=max_tokens or self.max_tokens,
            extra_body={"ignore_eos": True},
        )

    def stream(self, model: str, prompt: str, max_tokens: int | None = None) -> tuple[int, float, float]:
        """(completion tokens, seconds to the first content chunk, total seconds) of one streamed answer."""
        t0 = time.perf_counter()
        first, tokens = None, 0
        for chunk in self.client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": prompt}],
            temperature=0,
            stream=True,
            max_tokens=max_tokens or self.max_tokens,
            stream_options={"include_usage": True},
            extra_body={"ignore_eos": True},
        ):
            if chunk.choices and chunk.choices[0].delta.content and first is None:
                first = time.perf_counter() - t0
            if chunk.usage:
                tokens = chunk.usage.completion_tokens
        return tokens, first or 0.0, time.perf_counter() - t0

    def post(self, path: str, body: dict) -> float:
        import requests

        t0 = time.perf_counter()
        requests.post(self.url + path, json=body, timeout=600).raise_for_status()
        return time.perf_counter() - t0


class Plain:
    """`model.generate` in this process on the same checkpoint, for the throughput baseline."""

    def __init__(self, path: Path):
        from arena.inference import load_checkpoint_hero, pick_device

        self.device, dtype = pick_device()
        self.model, self.tok = load_checkpoint_hero(path, device=self.device, dtype=dtype)
        self.model.eval()

    def generate(self, prompt: str, max_tokens: int) -> tuple[int, float]:
        """(tokens, seconds) of one greedy answer of exactly max_tokens tokens."""
        import torch

        from arena.inference import chat_prompt_ids

        ids = torch.tensor(
            [chat_prompt_ids(self.tok, [{"role": "user", "content": prompt}])], device=self.device
        )
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=max_tokens,
                do_sample=False,
                use_cache=True,
                pad_token_id=self.tok.pad_token_id,
                eos_token_id=self.model.config.vocab_size,  # never produced: exactly max_tokens, as ignore_eos
            )
        return out.shape[1] - ids.shape[1], time.perf_counter() - t0


def run(home: Path, max_tokens: int, reps: int, threads: int = 1) -> dict:
    names = sorted(
        (p.name for p in (home / "models").iterdir() if p.name.startswith("checkpoint-")),
        key=lambda n: int(n.split("-")[1]),
    )
    a, b = names[-1], names[-2]
    port = free_port()
    # One torch thread on both sides: DIO is too small to gain from more (measured: 1 thread ~10%
    # faster than 2 on the 2-core box), and on a small box the server's torch threads would otherwise
    # contend with its own request threads and with this client.
    proc = start_oracle(home, port, env={"REALM_LOG_CONSOLE": "0", "OMP_NUM_THREADS": str(threads)})
    try:
        bench = Bench(f"http://127.0.0.1:{port}", max_tokens)
        bench.post("/oracle/load", {"model": a})
        bench.post("/oracle/load", {"model": b})
        bench.chat(a, PROMPTS[0], 4)  # warm up both paths
        bench.stream(a, PROMPTS[0], 4)

        # Throughput: server (plain requests, and streams) against model.generate, same prompts and
        # length, interleaved request by request so a busy machine slows all three alike.
        import torch

        torch.set_num_threads(threads)
        plain = Plain(home / "models" / a)
        plain.generate(PROMPTS[0], 4)
        tally = {"server": [0, 0.0], "stream": [0, 0.0], "plain": [0, 0.0]}
        for _ in range(reps):
            for p in PROMPTS:
                t0 = time.perf_counter()
                n = bench.chat(a, p).usage.completion_tokens
                tally["server"][0] += n
                tally["server"][1] += time.perf_counter() - t0
                n, _, secs = bench.stream(a, p)
                tally["stream"][0] += n
                tally["stream"][1] += secs
                n, secs = plain.generate(p, max_tokens)
                tally["plain"][0] += n
                tally["plain"][1] += secs
                # This process's OpenMP threads spin for a while after a parallel region; let them
                # settle so they do not slow the server's next measurement.
                time.sleep(0.3)
        server_tps, stream_tps, plain_tps = (tally[k][0] / tally[k][1] for k in ("server", "stream", "plain"))

        # Switching between two loaded checkpoints: alternate vs repeat a 1-token request.
        def timed(model: str) -> float:
            t = time.perf_counter()
            bench.chat(model, PROMPTS[0], 1)
            return time.perf_counter() - t

        same = [timed(a) for _ in range(20)]
        alternating = [timed(b if i % 2 else a) for i in range(20)]
        switch_ms = (statistics.median(alternating) - statistics.median(same)) * 1000

        # Cold loads: unload one checkpoint and load it again (its weights go into a copy of the loaded
        # model of the same architecture); then with nothing loaded (a full from_pretrained build).
        cold = []
        for _ in range(5):
            bench.post("/oracle/unload", {"model": b})
            cold.append(bench.post("/oracle/load", {"model": b}))
        build = []
        for _ in range(3):
            bench.post("/oracle/unload", {"model": a})
            bench.post("/oracle/unload", {"model": b})
            build.append(bench.post("/oracle/load", {"model": a}))
        bench.post("/oracle/load", {"model": a})

        # 8 concurrent streaming clients against 1, alternated so both see the same machine.
        conc_tokens = max_tokens // 2
        one_t, one_s, eight_t, eight_s = 0, 0.0, 0, 0.0
        for _round in range(2):
            for i in range(4):
                n, _, secs = bench.stream(a, PROMPTS[i % len(PROMPTS)], conc_tokens)
                one_t, one_s = one_t + n, one_s + secs
            results: list[tuple[int, float, float]] = []

            def client(i: int, results=results) -> None:
                results.append(bench.stream(a, PROMPTS[i % len(PROMPTS)], conc_tokens))

            clients = [threading.Thread(target=client, args=(i,)) for i in range(8)]
            t0 = time.perf_counter()
            for t in clients:
                t.start()
            for t in clients:
                t.join()
            eight_s += time.perf_counter() - t0
            eight_t += sum(n for n, _, _ in results)
        one_tps, eight_tps = one_t / one_s, eight_t / eight_s

        # First-token latency, one client at a time.
        firsts = [bench.stream(a, PROMPTS[i % len(PROMPTS)], 8)[1] * 1000 for i in range(30)]
        import requests

        status = requests.get(f"{bench.url}/oracle/status", timeout=30).json()
    finally:
        stop(proc)
    return {
        "device": status["device"],
        "dtype": status["dtype"],
        "checkpoints": [a, b],
        "max_tokens": max_tokens,
        "torch_threads": threads,
        "throughput": {
            "server_tokens_per_s": round(server_tps, 1),
            "server_stream_tokens_per_s": round(stream_tps, 1),
            "plain_generate_tokens_per_s": round(plain_tps, 1),
            "ratio": round(server_tps / plain_tps, 3),
            "stream_ratio": round(stream_tps / plain_tps, 3),
        },
        "switch_ms": round(switch_ms, 2),
        "request_ms": {
            "same": round(statistics.median(same) * 1000, 2),
            "alternating": round(statistics.median(alternating) * 1000, 2),
        },
        "cold_load_s": round(statistics.median(cold), 4),
        "cold_build_s": round(statistics.median(build), 4),
        "concurrency": {
            "tokens_per_request": conc_tokens,
            "one_client_tokens_per_s": round(one_tps, 1),
            "eight_clients_tokens_per_s": round(eight_tps, 1),
            "speedup": round(eight_tps / one_tps, 2),
            "largest_batch": status["generation"]["max_batch_seen"],
        },
        "first_token_ms": {"p50": round(percentile(firsts, 50), 1), "p95": round(percentile(firsts, 95), 1)},
        "loads": status["loads"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, help="a trained realm home (default: train a fresh one)")
    ap.add_argument("--max-tokens", type=int, default=128, help="tokens per answer in the throughput runs")
    ap.add_argument("--reps", type=int, default=3, help="passes over the prompts in the throughput runs")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for the server and the baseline")
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = args.home or make_home(Path(tmp))
        result = run(home, args.max_tokens, args.reps, args.threads)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
