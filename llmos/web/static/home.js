// Home: the engine state per loaded model (GET /ps, /ready), the queue depth and tokens/s (from
// /metrics), refreshed every two seconds.
"use strict";
Console.onReady(() => {
  const { el, t } = Console;
  const engines = document.getElementById("engines");
  let chart = null, last = null;

  async function engineState() {
    try {
      const ready = await Console.api("/ready");
      const state = await ready.json();
      document.getElementById("ready-state").textContent = t("status") + ": " + (state.status || ready.status);
    } catch (err) {
      document.getElementById("ready-state").textContent = String(err);
    }
    try {
      const ps = await Console.json("/api/ps");
      engines.replaceChildren(...ps.models.map((m) => el("tr", {}, [
        el("td", { text: m.name }),
        el("td", { text: m.active ? t("busy") : t("idle") }),
        el("td", { text: String(m.running ?? "–") }),
        el("td", { text: String(m.waiting ?? "–") }),
        el("td", { text: Console.format.bytes(m.kv_committed_bytes) + " / " + Console.format.bytes(m.kv_reserved_bytes) }),
      ])));
      if (!ps.models.length) engines.replaceChildren(el("tr", {}, [el("td", { colspan: "5", text: t("no_models_loaded") })]));
    } catch (err) {
      engines.replaceChildren(el("tr", {}, [el("td", { colspan: "5", text: String(err) })]));
    }
  }
  async function throughput() {
    if (!Console.allows("metrics")) return;
    const samples = await Metrics.poll();
    const tokens = Metrics.sum(samples, "llmos:generation_tokens_total");
    const waiting = Metrics.sum(samples, "llmos:num_requests_waiting");
    document.getElementById("queue-depth").textContent = String(waiting);
    const now = Date.now() / 1000;
    if (!chart) chart = new Metrics.Rolling(document.getElementById("tps-chart"), ["tokens/s"], 150);
    chart.push([last ? Math.max(0, (tokens - last.tokens) / (now - last.time)) : 0]);
    last = { tokens, time: now };
  }
  async function tick() {
    await Promise.all([engineState(), throughput().catch(() => {})]);
  }
  tick();
  setInterval(tick, 2000);
});
