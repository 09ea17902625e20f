// The server's own /metrics, parsed in the page: Prometheus text -> samples, histogram quantiles
// from cumulative buckets (as PromQL's histogram_quantile does), rates from counter deltas between
// polls, and small rolling uPlot charts. No Grafana, no outside requests.
"use strict";
(function () {
  const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/;
  const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

  function parse(text) {
    const samples = [];
    for (const line of text.split("\n")) {
      if (!line || line[0] === "#") continue;
      const m = LINE.exec(line);
      if (!m) continue;
      const labels = {};
      for (const l of (m[3] || "").matchAll(LABEL)) labels[l[1]] = l[2];
      samples.push({ name: m[1], labels, value: parseFloat(m[4]) });
    }
    return samples;
  }
  function sum(samples, name, filter) {
    let total = 0;
    for (const s of samples) if (s.name === name && (!filter || filter(s.labels))) total += s.value;
    return total;
  }
  // Buckets summed over every label but "le": [[upper, cumulative count], ...] sorted.
  function buckets(samples, name) {
    const byLe = new Map();
    for (const s of samples) {
      if (s.name !== name + "_bucket") continue;
      const le = s.labels.le === "+Inf" ? Infinity : parseFloat(s.labels.le);
      byLe.set(le, (byLe.get(le) || 0) + s.value);
    }
    return [...byLe.entries()].sort((a, b) => a[0] - b[0]);
  }
  function quantile(q, cumulative) {
    if (!cumulative.length) return null;
    const total = cumulative[cumulative.length - 1][1];
    if (!total) return null;
    const rank = q * total;
    let prevLe = 0, prevCount = 0;
    for (const [le, count] of cumulative) {
      if (count >= rank) {
        if (le === Infinity) return prevLe;
        if (count === prevCount) return le;
        return prevLe + (le - prevLe) * (rank - prevCount) / (count - prevCount);
      }
      prevLe = le; prevCount = count;
    }
    return prevLe;
  }
  // The quantile of only what arrived between two polls (bucket deltas), like rate() in PromQL.
  function windowQuantile(q, now, before) {
    if (!before) return quantile(q, now);
    const prev = new Map(before);
    return quantile(q, now.map(([le, c]) => [le, c - (prev.get(le) || 0)]));
  }

  function clockTime(seconds) {
    return new Date(seconds * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
  }

  class Rolling {
    // A uPlot chart of the last `points` polls, one line per series name.
    constructor(target, names, points) {
      this.points = points || 120;
      this.data = [[]].concat(names.map(() => []));
      const width = Math.max(240, target.clientWidth || 400);
      const colors = ["#2563eb", "#dc2626", "#16a34a", "#9333ea"];
      this.plot = new uPlot({
        width, height: 180,
        series: [{}].concat(names.map((label, i) => ({ label, stroke: colors[i % colors.length], width: 2 }))),
        // clock times only, spaced so labels never overlap (uPlot's default puts a date on the first tick)
        axes: [{ space: 70, values: (u, ticks) => ticks.map(clockTime) }, { size: 50 }],
        padding: [8, 28, 0, 28], // room for the first and last time labels at the edges
        // a fixed window (the last `points` polls of 2 s), so a new chart is not a blur of years
        scales: { x: { time: true, range: () => { const now = Date.now() / 1000; return [now - 2 * this.points, now]; } } },
        legend: { show: true },
      }, this.data, target);
      window.addEventListener("resize", () => this.plot.setSize({ width: Math.max(240, target.clientWidth), height: 180 }));
    }
    push(values) {
      this.data[0].push(Date.now() / 1000);
      values.forEach((v, i) => this.data[i + 1].push(v));
      if (this.data[0].length > this.points) for (const column of this.data) column.shift();
      this.plot.setData(this.data);
    }
  }

  async function poll() {
    const response = await Console.api("/metrics");
    if (!response.ok) throw new Error(response.status + " " + response.statusText);
    return parse(await response.text());
  }

  window.Metrics = { parse, sum, buckets, quantile, windowQuantile, Rolling, poll };
})();
