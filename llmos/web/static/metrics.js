// Metrics: the server's /metrics polled every two seconds and drawn with uPlot: TTFT, TPOT and
// end-to-end p50/p95 over each poll's window (histogram bucket deltas), tokens/s, running and
// waiting requests, KV cache usage, and requests refused by rate limits (429s).
"use strict";
Console.onReady(() => {
  const M = Metrics;
  const charts = {
    ttft: new M.Rolling(document.getElementById("chart-ttft"), ["p50 s", "p95 s"]),
    tpot: new M.Rolling(document.getElementById("chart-tpot"), ["p50 s", "p95 s"]),
    e2e: new M.Rolling(document.getElementById("chart-e2e"), ["p50 s", "p95 s"]),
    tps: new M.Rolling(document.getElementById("chart-tps"), ["generated", "prompt"]),
    queue: new M.Rolling(document.getElementById("chart-queue"), ["running", "waiting"]),
    kv: new M.Rolling(document.getElementById("chart-kv"), ["KV cache %"]),
    limited: new M.Rolling(document.getElementById("chart-429"), ["429/s"]),
  };
  const HISTOGRAMS = {
    ttft: "llmos:time_to_first_token_seconds",
    tpot: "llmos:time_per_output_token_seconds",
    e2e: "llmos:e2e_request_latency_seconds",
  };
  let last = null;

  async function tick() {
    let samples;
    try {
      samples = await M.poll();
    } catch (err) {
      document.getElementById("metrics-status").textContent = String(err);
      return;
    }
    const now = Date.now() / 1000;
    const current = {
      time: now,
      generated: M.sum(samples, "llmos:generation_tokens_total"),
      prompt: M.sum(samples, "llmos:prompt_tokens_total"),
      limited: M.sum(samples, "llmos:rate_limited_total"),
      buckets: {},
    };
    for (const [key, name] of Object.entries(HISTOGRAMS)) {
      const b = M.buckets(samples, name);
      current.buckets[key] = b;
      const before = last && last.buckets[key];
      charts[key].push([M.windowQuantile(0.5, b, before), M.windowQuantile(0.95, b, before)]);
    }
    const rate = (field) => (last ? Math.max(0, (current[field] - last[field]) / (now - last.time)) : 0);
    charts.tps.push([rate("generated"), rate("prompt")]);
    charts.queue.push([M.sum(samples, "llmos:num_requests_running"), M.sum(samples, "llmos:num_requests_waiting")]);
    const kv = samples.filter((s) => s.name === "llmos:kv_cache_usage_perc").map((s) => s.value);
    charts.kv.push([kv.length ? 100 * Math.max(...kv) : 0]);
    charts.limited.push([rate("limited")]);
    document.getElementById("metrics-status").textContent = "";
    last = current;
  }
  tick();
  setInterval(tick, 2000);
});
