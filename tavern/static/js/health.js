// The top bar's health light: polls GET /api/health (sentinels.health, the same checks as
// `realm health`) and shows healthy / warnings / the failing checks, each check's message in the tooltip.
// Loaded by base.html on every page; it needs nothing from the page it sits on.

const POLL_MS = 15000;

function render(el, report) {
  const checks = Object.entries(report.checks || {});
  const problems = report.problems || [];
  const warns = checks.filter(([, c]) => c.status === "warn").map(([n]) => n);
  const dot = el.querySelector(".dot");
  const label = el.querySelector(".health-label");
  el.dataset.ok = String(Boolean(report.ok));
  el.dataset.problems = problems.join(",");
  dot.classList.toggle("on", Boolean(report.ok));
  dot.style.background = report.ok && warns.length ? "var(--warn, #d8a13a)" : "";
  if (!report.ok) label.textContent = `unwell: ${problems.join(", ")}`;
  else label.textContent = warns.length ? `healthy (warn: ${warns.join(", ")})` : "healthy";
  el.title = checks.map(([n, c]) => `${c.status.toUpperCase()}  ${n}: ${c.message}`).join("\n");
}

async function poll(el) {
  try {
    const res = await fetch("/api/health", { headers: { Accept: "application/json" } });
    render(el, await res.json());
  } catch (err) {
    render(el, { ok: false, problems: ["tavern unreachable"], checks: {} });
  }
}

const el = document.getElementById("health");
if (el) {
  poll(el);
  setInterval(() => poll(el), POLL_MS);
}
