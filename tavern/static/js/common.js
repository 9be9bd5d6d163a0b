// Shared page helpers: JSON fetch with the realm token header, toasts, formatting.
// The token lives in localStorage and travels only in the X-Realm-Token header (never a cookie).

const TOKEN_KEY = "realmToken";

export function token() { return localStorage.getItem(TOKEN_KEY) || ""; }

export async function api(path, { method = "GET", body, form } = {}) {
  const headers = {};
  if (token()) headers["X-Realm-Token"] = token();
  let payload;
  if (form) payload = form;
  else if (body !== undefined) { headers["Content-Type"] = "application/json"; payload = JSON.stringify(body); }
  const res = await fetch(path, { method, headers, body: payload });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) {
    const err = new Error(data.error || `${method} ${path}: HTTP ${res.status}`);
    err.status = res.status; err.data = data;
    throw err;
  }
  return data;
}

const ICONS = {
  good: "/static/svg/trophy.svg", bad: "/static/svg/stat-atk.svg", quest: "/static/svg/tankard.svg",
  skill: "/static/svg/skill-generic.svg", hero: "/static/svg/dio.svg",
};

export function toast(title, text, { kind = "good", icon, key } = {}) {
  const box = document.getElementById("toasts");
  if (!box) return;
  // The same deed can be reported twice (an upload's answer and its event): show it once.
  if (key && [...box.children].some((t) => t.dataset.key === key)) return;
  const el = document.createElement("div");
  el.className = `toast ${kind === "bad" ? "bad" : ""}`;
  el.dataset.kind = kind;
  if (key) el.dataset.key = key;
  el.innerHTML = `<img class="px" alt=""><div><b></b><span></span></div>`;
  el.querySelector("img").src = icon || ICONS[kind] || ICONS.good;
  el.querySelector("b").textContent = title;
  el.querySelector("span").textContent = text;
  box.appendChild(el);
  setTimeout(() => el.remove(), kind === "bad" ? 12000 : 7000);
  while (box.children.length > 5) box.firstChild.remove();
}

export function setConnected(on, label) {
  document.getElementById("conn-dot")?.classList.toggle("on", on);
  const l = document.getElementById("conn-label");
  if (l) l.textContent = label || (on ? "live" : "reconnecting…");
}

export function setupToken(auth) {
  const box = document.getElementById("token-box");
  if (!box || !auth) return;
  box.classList.toggle("show", auth.token_required);
  const input = document.getElementById("token-input");
  input.value = token();
  document.getElementById("token-save").onclick = () => {
    localStorage.setItem(TOKEN_KEY, input.value.trim());
    toast("Token saved", "Mutating calls now carry your token.");
  };
}

export function fmt(n, digits = 3) {
  if (n === null || n === undefined || Number.isNaN(n)) return "–";
  if (typeof n !== "number") return String(n);
  if (Math.abs(n) >= 1000 || digits === 0) return Math.round(n).toLocaleString();
  return n.toFixed(digits).replace(/(\.\d*?)0+$/, "$1").replace(/\.$/, "");
}

export function fmtEta(s) {
  if (s === null || s === undefined) return "–";
  s = Math.max(0, Math.round(s));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  return h ? `${h}h ${m}m` : m ? `${m}m ${sec}s` : `${sec}s`;
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

export function sparkline(values, { width = 200, height = 28, threshold } = {}) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("height", height); svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const y = (v) => height - 2 - v * (height - 4);
  if (threshold !== undefined) {
    const t = document.createElementNS(ns, "line");
    Object.entries({ x1: 0, x2: width, y1: y(threshold), y2: y(threshold), stroke: "#c8963e", "stroke-dasharray": "3 3" })
      .forEach(([k, v]) => t.setAttribute(k, v));
    svg.append(t);
  }
  if (values.length) {
    const step = values.length > 1 ? width / (values.length - 1) : 0;
    const pts = values.map((v, i) => `${(i * step).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    const line = document.createElementNS(ns, "polyline");
    Object.entries({ points: pts, fill: "none", stroke: "#6ad04f", "stroke-width": 2 }).forEach(([k, v]) => line.setAttribute(k, v));
    svg.append(line);
  }
  return svg;
}
