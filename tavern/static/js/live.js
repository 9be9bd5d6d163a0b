// The live feed: snapshot first, then catch-up by event id, then Socket.IO pushes.
// Every event passes through one ordered, de-duplicated path (by id), so a reload, a reconnect or a
// server restart neither loses nor repeats an event. Live pushes that arrive while a catch-up is
// running, or that skip an id, wait for (or trigger) a catch-up instead of being applied early.
import { io } from "/vendor/socket.io.esm.min.js";
import { api, setConnected } from "./common.js";

export class Live {
  constructor(lastId, onEvents) {
    this.lastId = lastId;
    this.onEvents = onEvents;
    this.catching = false;
    this.buffer = [];
  }

  start() {
    // Socket.IO reconnects by itself (exponential backoff) after a network drop or a server restart.
    this.socket = io({ transports: ["websocket", "polling"], reconnectionDelayMax: 3000 });
    this.socket.on("connect", () => { setConnected(true); this.catchUp(); });
    this.socket.on("disconnect", () => setConnected(false));
    this.socket.io.on("reconnect_attempt", () => setConnected(false, "reconnecting…"));
    this.socket.on("events", (evs) => this.push(evs));
    window.__tavernLive = this;  // for tests and curious adventurers
  }

  push(evs) {
    if (this.catching) { this.buffer.push(...evs); return; }
    const fresh = evs.filter((e) => e.id > this.lastId);
    if (fresh.length && fresh[0].id > this.lastId + 1) { this.buffer.push(...fresh); this.catchUp(); return; }
    this.apply(fresh);
  }

  apply(evs) {
    const fresh = evs.filter((e) => e.id > this.lastId).sort((a, b) => a.id - b.id);
    const out = [];
    for (const e of fresh) if (e.id > this.lastId) { out.push(e); this.lastId = e.id; }
    if (out.length) this.onEvents(out);
  }

  async catchUp() {
    if (this.catching) return;
    this.catching = true;
    try {
      for (;;) {
        const page = await api(`/api/events?since=${this.lastId}&limit=1000`);
        this.apply(page.events);
        if (!page.more) break;
      }
    } catch (err) {
      console.warn("catch-up failed; will retry on the next push", err.message);
    } finally {
      this.catching = false;
      const buffered = this.buffer.splice(0);
      if (buffered.length) this.apply(buffered);
    }
  }
}
