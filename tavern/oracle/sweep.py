"""`realm oracle sweep`: answer quality against the think budget, scored by the skill's own scorer.

    realm oracle sweep --skill bin --level 3 --budgets 0,16,64,256 [--model dio@champion] [--out DIR]

For each budget in `--budgets`, every item of the guild's eval set at the skill and level is answered
with `max_think_tokens` = that budget (past it, `</think>` is forced and the answer follows) and scored
by the skill's scorer, exactly as the guild's evals score. Generation is the Oracle's own
/v1/chat/completions: its app built in this process (the default: no server needed), or over HTTP to
the Oracle on a host of the registry (`--host NAME`), so both paths resolve ids, batch and apply the
budget the same way. `--model` defaults to `<hero>@champion`. It writes, into `--out`:

    sweep.json   the run (skill, level, model, budgets), one summary per budget and every answer
    sweep.csv    one row per budget: budget, n, correct, accuracy, mean_think_chars, seconds
    sweep.png    accuracy against budget (matplotlib's Agg backend: no display needed)

Budgets cost tokens, not answers: `max_tokens` for a budget is the budget plus the answer room the
guild's evals give (the longest expected answer's bytes plus `guild.guild.ANSWER_MARGIN`) plus the
think/answer tags, so a budget is not cut short by the answer's room (the Oracle's own cap,
`oracle.max_tokens`, still bounds every response).
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from sentinels.clikit import home_option

if TYPE_CHECKING:
    from sentinels.realm import Realm

log = logging.getLogger("realm.oracle.sweep")

DEFAULT_BUDGETS = "0,16,64,256"
TAG_MARGIN = 8  # tokens for <think>, </think>, <answer>, </answer> and the line breaks between them
WORKERS = 8  # concurrent requests per budget: the Oracle batches requests that arrive together
REQUEST_TIMEOUT_S = 600.0
LOAD_PATIENCE_S = 300.0  # how long a sweep waits out 503s while its checkpoint loads
CHAT_PATH = "/v1/chat/completions"
THINK_END = "</think>"

# (prompts, max_think_tokens, max_tokens) -> (responses, concrete model id or None)
Generate = Callable[[list[str], int, int], tuple[list[str], str | None]]


class SweepError(click.ClickException):
    """A sweep that cannot run: bad budgets, an unknown skill or level, an unreachable Oracle."""


@dataclass
class BudgetResult:
    budget: int
    n: int
    correct: int
    accuracy: float
    mean_think_chars: float
    seconds: float


@dataclass
class SweepRun:
    skill: str
    level: int
    model: str | None
    source: str
    budgets: list[int]
    results: list[BudgetResult] = field(default_factory=list)
    answers: list[dict[str, Any]] = field(default_factory=list)
    resolved_model: str | None = None
    created_at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_budgets(text: str) -> list[int]:
    """ "0,16,64,256" -> [0, 16, 64, 256]: distinct, non-negative, in the order given."""
    out: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            value = int(part)
        except ValueError:
            raise SweepError(f"--budgets: {part!r} is not a whole number of tokens") from None
        if value < 0:
            raise SweepError(f"--budgets: {value} is negative; a think budget is 0 or more tokens")
        if value not in out:
            out.append(value)
    if not out:
        raise SweepError("--budgets: give at least one budget, e.g. 0,16,64,256")
    return out


def split_think(text: str) -> tuple[str, str]:
    """(think, answer) of a response: the answer is what follows the last `</think>` (the whole text
    when there is none), with `<answer>` tags dropped, so the scorer reads the answer as evals do."""
    think, sep, answer = text.rpartition(THINK_END)
    if not sep:
        think, answer = "", text
    think = think.replace("<think>", "").strip()
    answer = answer.replace("<answer>", "").replace("</answer>", "").strip()
    return think, answer


def run_sweep(
    generate: Generate,
    items: Sequence[dict[str, Any]],
    score: Callable[[str, str, str], bool],
    budgets: Sequence[int],
    *,
    answer_room: int,
) -> tuple[list[BudgetResult], list[dict[str, Any]], str | None]:
    """Answer and score every item at every budget: (summaries, per-answer rows, model id seen)."""
    prompts = [it["prompt"] for it in items]
    results, rows, resolved = [], [], None
    for budget in budgets:
        t0 = time.perf_counter()
        responses, model = generate(prompts, budget, budget + answer_room)
        resolved = resolved or model
        seconds = time.perf_counter() - t0
        correct, think_chars = 0, 0
        for index, (item, response) in enumerate(zip(items, responses, strict=True)):
            think, answer = split_think(response)
            ok = bool(score(item["prompt"], item["expected"], answer))
            correct += ok
            think_chars += len(think)
            rows.append({"budget": budget, "index": index, "correct": ok, "answer": answer, "think": think})
        n = len(items)
        results.append(
            BudgetResult(
                budget, n, correct, correct / n if n else 0.0, think_chars / n if n else 0.0, seconds
            )
        )
        log.info("sweep budget %d: %d/%d correct in %.2f s", budget, correct, n, seconds)
    return results, rows, resolved


# ---- generation: the Oracle's /v1/chat/completions, over HTTP or in this process ----------------------
# (request body) -> (status, JSON body, headers): one chat request to an Oracle, however it is reached.
Post = Callable[[dict[str, Any]], tuple[int, Any, Mapping[str, str]]]


def http_post(url: str, token: str | None = None) -> Post:
    """Requests to the Oracle at `url` (one pooled session; a realm token when the config holds one)."""
    import requests

    session = requests.Session()
    headers = {"X-Realm-Token": token} if token else {}

    def post(body: dict[str, Any]) -> tuple[int, Any, Mapping[str, str]]:
        try:
            resp = session.post(url + CHAT_PATH, json=body, headers=headers, timeout=REQUEST_TIMEOUT_S)
        except requests.RequestException as exc:
            raise SweepError(f"the Oracle at {url} is unreachable: {exc}") from exc
        try:
            data = resp.json()
        except ValueError:
            data = {"error": {"message": resp.text[:300]}}
        return resp.status_code, data, resp.headers

    return post


@contextmanager
def inprocess_post(realm: Realm) -> Iterator[Post]:
    """The Oracle's own app, built in this process (`realm oracle` without the HTTP server): the same
    id resolution, model manager, batching engine and think budget, so both paths answer alike."""
    import threading

    from tavern.oracle.cli import build_app

    app = build_app(realm, "127.0.0.1")
    local = threading.local()  # a test client per thread: requests run side by side, as over HTTP

    def post(body: dict[str, Any]) -> tuple[int, Any, Mapping[str, str]]:
        client = getattr(local, "client", None) or app.test_client()
        local.client = client
        resp = client.post(CHAT_PATH, json=body)
        return resp.status_code, resp.get_json(silent=True), resp.headers

    try:
        yield post
    finally:
        app.config["ORACLE"].close()


def chat_generate(post: Post, model: str, where: str) -> Generate:
    """Greedy answers through `post`, one request per prompt, several at once so the Oracle batches
    them. A 503 while the checkpoint loads is waited out as its Retry-After says."""

    def one(prompt: str, budget: int, max_tokens: int) -> tuple[str, str | None]:
        body = {
            "model": model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_tokens,
            "max_think_tokens": budget,
            "temperature": 0,
        }
        deadline = time.monotonic() + LOAD_PATIENCE_S
        while True:
            status, data, headers = post(body)
            if status == 503 and headers.get("Retry-After") and time.monotonic() < deadline:
                time.sleep(min(float(headers["Retry-After"]), 5.0))  # the server's own estimate
                continue
            if status != 200:
                err = (data or {}).get("error", data) if isinstance(data, dict) else data
                message = err.get("message") if isinstance(err, dict) else err
                raise SweepError(f"the Oracle ({where}) answered {status}: {message}")
            return data["choices"][0]["message"]["content"] or "", data.get("model")

    def generate(prompts: list[str], budget: int, max_tokens: int) -> tuple[list[str], str | None]:
        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            answers = list(pool.map(lambda p: one(p, budget, max_tokens), prompts))
        return [a for a, _ in answers], next((m for _, m in answers if m), None)

    return generate


# ---- outputs ----------------------------------------------------------------------------------------
CSV_FIELDS = ("budget", "n", "correct", "accuracy", "mean_think_chars", "seconds")


def write_outputs(run: SweepRun, out_dir: Path) -> dict[str, Path]:
    """sweep.json, sweep.csv and sweep.png in `out_dir` (created); their paths by kind."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "sweep.json", "csv": out_dir / "sweep.csv", "png": out_dir / "sweep.png"}
    paths["json"].write_text(json.dumps(run.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    with paths["csv"].open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for r in run.results:
            row = asdict(r)
            writer.writerow(
                {k: round(row[k], 6) if isinstance(row[k], float) else row[k] for k in CSV_FIELDS}
            )
    plot(run, paths["png"])
    return paths


def plot(run: SweepRun, path: Path) -> None:
    """Accuracy against think budget. The x axis is symlog: budgets grow geometrically and 0 is one."""
    import matplotlib

    matplotlib.use("Agg")  # files only: the sweep runs on servers without a display
    from matplotlib import pyplot as plt

    budgets = [r.budget for r in run.results]
    acc = [r.accuracy for r in run.results]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    try:
        ax.plot(budgets, acc, marker="o", color="#c8963e", linewidth=2)
        for b, a, r in zip(budgets, acc, run.results, strict=True):
            ax.annotate(f"{r.correct}/{r.n}", (b, a), textcoords="offset points", xytext=(0, 8), ha="center")
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xticks(budgets, [str(b) for b in budgets])
        ax.set_ylim(-0.05, 1.1)
        ax.set_xlabel("think budget (max_think_tokens)")
        ax.set_ylabel("accuracy (skill scorer)")
        model = run.resolved_model or run.model or "default model"
        ax.set_title(f"{run.skill.upper()} level {run.level} · {model}")
        ax.grid(True, alpha=0.3)
        fig.tight_layout()
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)


# ---- the command ------------------------------------------------------------------------------------
def sweep(
    realm: Realm,
    *,
    skill: str,
    level: int,
    budgets: Sequence[int],
    model: str | None = None,
    host: str | None = None,
    limit: int | None = None,
    out_dir: Path | None = None,
) -> tuple[SweepRun, dict[str, Path]]:
    """Run the sweep for a realm and write its files; what `realm oracle sweep` does."""
    from guild.guild import ANSWER_MARGIN, Guild

    guild = Guild.from_realm(realm)
    if skill not in guild.cfg.skills:
        raise SweepError(f"no active skill {skill!r}; skills: {', '.join(guild.cfg.skills)}")
    try:
        items = guild.eval_set(skill, level)
    except ValueError as exc:
        raise SweepError(str(exc)) from exc
    items = items[:limit] if limit else items
    answer_room = max(len(it["expected"].encode()) for it in items) + ANSWER_MARGIN + TAG_MARGIN
    model = model or f"{realm.config.hero.name.lower()}@champion"
    with ExitStack() as stack:
        if host is not None:
            from sentinels.hosts import ServiceNotFound, load_hosts

            try:
                source = load_hosts(realm.config).get_service_url("oracle", host or None)
            except ServiceNotFound as exc:
                raise SweepError(str(exc)) from exc
            post = http_post(source, realm.config.oracle.token)
        else:
            source = "in-process"
            post = stack.enter_context(inprocess_post(realm))
        run = SweepRun(skill=skill, level=level, model=model, source=source, budgets=list(budgets))
        run.results, run.answers, run.resolved_model = run_sweep(
            chat_generate(post, model, source),
            items,
            guild.client(skill).score,
            budgets,
            answer_room=answer_room,
        )
    if out_dir is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        out_dir = realm.home.root / "reports" / f"sweep-{skill}-l{level}-{stamp}"
    return run, write_outputs(run, Path(out_dir))


@click.command("sweep")
@click.option("--skill", required=True, help="Active skill id (bin, sy, ...).")
@click.option("--level", type=click.IntRange(min=1), required=True, help="Eval set level.")
@click.option("--budgets", default=DEFAULT_BUDGETS, show_default=True, help="Think budgets in tokens.")
@click.option(
    "--model", default=None, help="Any Oracle model id (dio@champion, an alias, a checkpoint name)."
)
@click.option(
    "--host", default=None, help="Ask the Oracle on this host of the registry instead of in-process."
)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N eval items.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for sweep.json/.csv/.png (default: <home>/reports/sweep-SKILL-lLEVEL-TIME).",
)
@home_option
@click.pass_context
def sweep_command(ctx, skill, level, budgets, model, host, limit, out_dir, home):
    """Score each think budget on the skill's eval set; write JSON, CSV and a PNG plot."""
    from sentinels.clikit import realm_from

    realm = realm_from(ctx, home)
    run, paths = sweep(
        realm,
        skill=skill.lower(),
        level=level,
        budgets=parse_budgets(budgets),
        model=model,
        host=host,
        limit=limit,
        out_dir=out_dir,
    )
    click.echo(
        f"{skill.upper()} level {level} · {run.resolved_model or model or 'default model'} · {run.source}"
    )
    for r in run.results:
        click.echo(
            f"  budget {r.budget:>5}: {r.correct}/{r.n} correct ({r.accuracy:.0%}) in {r.seconds:.1f} s"
        )
    for kind, path in paths.items():
        click.echo(f"{kind}: {path}")
