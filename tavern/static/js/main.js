// The Tavern's main page: snapshot -> chart history -> live events, and the handlers that turn
// events into the game (XP floating up, the battle moving, toasts for deeds and failures).
import { api, fmt, setupToken, toast } from "./common.js";
import { LossChart } from "./chart.js";
import { Live } from "./live.js";
import { QuestBoard } from "./board.js";
import { ChampionBoard, championToast } from "./champion.js";
import { chronicle, floatXp, renderAchievements, renderBattle, renderHero, renderPending, renderSkills } from "./panels.js";

let state;
const chart = new LossChart(document.getElementById("loss-chart"), {
  onInfo: (t) => { document.getElementById("chart-info").textContent = t; },
});
const board = new QuestBoard();
const champions = new ChampionBoard();
let refreshTimer = null;

async function refreshState() {
  state = await api("/api/state");
  renderHero(state.hero);
  renderBattle(state.battle, state.pending_commands);
  renderSkills(state.skills);
  renderAchievements(state.achievements);
}
// Bursts of events (an eval round, a battle ending) trigger one snapshot, not one per event.
function refreshSoon() { clearTimeout(refreshTimer); refreshTimer = setTimeout(() => refreshState().catch(() => {}), 300); }

function onStep(p, ts) {
  const hero = state.hero;
  const xp = p.xp ?? p.step;
  if (xp !== undefined && xp > hero.xp) {
    floatXp(xp - hero.xp);
    hero.xp = xp;
    if (p.level !== undefined && p.level > hero.level) {
      hero.level = p.level; hero.level_xp = p.level * state.xp_per_level; hero.next_level_xp = (p.level + 1) * state.xp_per_level;
    }
    while (hero.xp >= hero.next_level_xp) { hero.level_xp = hero.next_level_xp; hero.next_level_xp += state.xp_per_level; }
    renderHero(hero);
  }
  Object.assign(state.battle, {
    step: p.step, loss: p.loss, tokens_per_s: p.tokens_per_s, progress: p.progress, eta_s: p.eta_s,
    ...(p.val_loss !== undefined ? { val_loss: p.val_loss } : {}),
  });
  if (!state.battle.state || state.battle.state === "idle") state.battle.state = "fighting";
  renderBattle(state.battle);
  chart.addStep(p, ts);
}

const HANDLERS = {
  step: onStep,
  val: (p, ts) => { chart.addVal(p, ts); state.battle.val_loss = p.val_loss; renderBattle(state.battle); },
  "battle.start": (p) => {
    Object.assign(state.battle, { state: "fighting", quest_id: p.quest_id, quest_name: p.name, progress: 0 });
    renderBattle(state.battle); board.refreshSoon(); chronicle(`Battle begins: ${p.name}`);
  },
  "battle.end": (p, ts) => {
    chart.addVal(p, ts);
    if (p.status === "completed") toast("Quest complete!", `Quest #${p.quest_id} won at step ${p.step} · loss ${fmt(p.train_loss)}`, { kind: "quest" });
    chronicle(`Battle ends (${p.status}) at step ${p.step}`);
    board.refreshSoon(); refreshSoon();
  },
  "checkpoint.saved": (p, ts) => { chart.addVal(p, ts); chronicle(`Checkpoint ${p.name} saved`); },
  "quest.received": (p) => { chronicle(`Quest received: ${p.name}`); board.refreshSoon(); },
  "quest.queued": (p) => { chronicle(`Quest queued: ${p.name} (${p.priority})`); board.refreshSoon(); refreshSoon(); },
  "quest.rejected": (p) => { toast("Quest rejected", `${p.name}: ${p.reason}`, { kind: "bad", key: `rejected-${p.quest_id}` }); board.refreshSoon(); },
  "quest.cancelled": () => board.refreshSoon(),
  "quest.retried": () => board.refreshSoon(),
  "quest.priority": () => board.refreshSoon(),
  "eval.done": (p) => { chronicle(`Eval ${p.skill} L${p.level}: ${Math.round(100 * p.accuracy)}%`); refreshSoon(); },
  "skill.level_up": (p) => { toast("Skill level up!", `${String(p.skill).toUpperCase()} reached level ${p.level}`, { kind: "skill", icon: `/static/svg/skill-${p.skill}.svg` }); refreshSoon(); },
  "skill.unlocked": (p) => { toast("Skill unlocked!", `${String(p.skill).toUpperCase()} joins the training (${String(p.by).toUpperCase()} reached level ${p.level})`, { kind: "skill", icon: `/static/svg/skill-${p.skill}.svg` }); refreshSoon(); },
  "hero.level_up": (p) => { toast("Level up!", `${state.hero.name} reached level ${p.level}`, { kind: "hero" }); refreshSoon(); },
  "achievement.unlocked": (p) => { toast("Achievement unlocked", `${p.name}: ${p.description}`); refreshSoon(); },
  "trainer.error": (p) => { toast("Trainer error", p.message || "the trainer reported an error", { kind: "bad" }); refreshSoon(); },
  "trainer.paused": () => { chronicle("The battle is paused"); refreshSoon(); },
  "trainer.resumed": () => { chronicle("The battle resumes"); refreshSoon(); },
  "trainer.stopped": () => { chronicle("The trainer stopped"); refreshSoon(); },
  "control.sent": (p) => { chronicle(`${p.action} requested`); refreshSoon(); },
  // The champion board (champion.js): a checkpoint's evals, the guild's move, a move by hand.
  "checkpoint.evaluated": () => champions.refreshSoon(),
  "champion.new": (p) => { championToast(p); chronicle(`New champion: ${p.name}`); champions.refreshSoon(); },
  "vault.alias": () => champions.refreshSoon(),
  // The disk guard (sentinels) pauses training rather than write a partial checkpoint.
  "disk.low": (p) => { toast("Disk low!", p.message || `${fmt(p.free_gb, 1)} GB free, below ${fmt(p.min_free_gb, 1)} GB`, { kind: "bad", key: "disk-low" }); refreshSoon(); },
};

function onEvents(evs) {
  for (const e of evs) {
    const h = HANDLERS[e.kind];
    try { if (h) h(e.payload || {}, e.ts); } catch (err) { console.warn("event handler failed", e.kind, err); }
  }
}

function setupControls() {
  for (const btn of document.querySelectorAll("[data-action]")) {
    btn.addEventListener("click", async () => {
      try {
        const res = await api("/api/control", { method: "POST", body: { action: btn.dataset.action } });
        renderPending(res.pending_commands);
      } catch (err) { toast("Command refused", err.message, { kind: "bad" }); }
    });
  }
  const smooth = document.getElementById("smooth");
  smooth.addEventListener("input", () => {
    document.getElementById("smooth-val").textContent = Number(smooth.value).toFixed(2);
    chart.setSmoothing(Number(smooth.value));
  });
  document.getElementById("axis").addEventListener("change", (e) => chart.load(e.target.value));
}

async function boot() {
  await refreshState();
  setupToken(state.auth);
  setupControls();
  // The champion board is a side panel: if it cannot load, the rest of the page still runs.
  const championBoard = champions.refresh().catch((err) => toast("The champion board is dark", err.message, { kind: "bad" }));
  await Promise.all([chart.load("step"), board.refresh(), championBoard]);
  // Start from the snapshot's event id: anything newer comes through catch-up, then live pushes.
  new Live(state.last_event_id, onEvents).start();
  document.body.dataset.ready = "1";
}

boot().catch((err) => toast("The Tavern could not load", err.message, { kind: "bad" }));
