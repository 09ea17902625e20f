// Training: the jobs of /api/jobs, one job's loss, learning-rate and tokens-per-second curves
// (uPlot, x = step) with a second run overlaid, its log tail (GET /logs?offset=, X-Next-Offset) and
// cancel / resume. Each shown run's curve arrives as server-sent events (GET /api/jobs/{id}/events,
// read with fetch so the API key goes in a header): every step as it is logged, then `end`. While a
// job runs the list and the log are polled every second. The start form is built from GET
// /api/jobs/schema (TrainConfig) and shows the equivalent `llmos train` command and YAML file.
// ?job=ID selects a job, &compare=ID overlays one.
"use strict";
Console.onReady(() => {
  const { el, t } = Console;
  const $ = (id) => document.getElementById(id);
  const FINISHED = ["succeeded", "failed", "cancelled"];
  const MAIN = ["base", "data", "method", "max_steps", "epochs", "lr", "batch_size", "name"];
  const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea"];
  const LOG_KEEP = 64 * 1024;  // characters of log tail the page keeps
  const state = { jobs: [], selected: null, compare: null, timer: null, logOffset: 0, schema: null };
  const curves = new Map();  // job id -> {status, steps, loss, lr}
  const plots = {};

  function when(iso) { return (iso || "").slice(0, 19).replace("T", " "); }
  function quote(s) { return /^[\w./:@,=-]+$/.test(s) ? s : "'" + s.replace(/'/g, "'\\''") + "'"; }
  function jobPath(id, tail) { return "/api/jobs/" + encodeURIComponent(id) + (tail || ""); }

  // --- curves ------------------------------------------------------------------------------------
  const streams = new Map();  // job id -> AbortController of its event stream
  let drawQueued = false;
  function queueDraw() {
    if (drawQueued) return;
    drawQueued = true;
    requestAnimationFrame(() => { drawQueued = false; drawAll(); });
  }
  function onEvent(id, curve, name, data) {
    if (name === "step") {
      curve.steps.push(data.step);
      curve.loss.push(data.loss);
      curve.lr.push(data.lr);
      curve.tps.push(data.tokens_per_second);
      queueDraw();
    } else if (name === "reset") {  // a resumed run redoes the steps after its checkpoint
      const keep = curve.steps.findIndex((step) => step > data.step);
      if (keep >= 0) for (const field of ["steps", "loss", "lr", "tps"]) curve[field].length = keep;
      queueDraw();
    } else if (name === "status") {
      curve.status = data.status;
      if (id === state.selected) show(data);
    } else if (name === "end" && id === state.selected) {
      refresh();  // once more: the list's row and the log's last lines
    }
  }
  async function stream(id) {
    // The whole curve from step 0, then each new step; resolves when the job ends or it is closed.
    if (streams.has(id)) return;
    const controller = new AbortController();
    streams.set(id, controller);
    const curve = { status: null, steps: [], loss: [], lr: [], tps: [] };
    curves.set(id, curve);
    try {
      const response = await Console.api(jobPath(id, "/events"), { signal: controller.signal });
      if (!response.ok) throw new Error(response.status + " " + response.statusText);
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
          let name = "message", data = "";
          for (const line of block.split("\n")) {
            if (line.startsWith("event:")) name = line.slice(6).trim();
            else if (line.startsWith("data:")) data += line.slice(5).trim();
          }
          if (data) onEvent(id, curve, name, JSON.parse(data));
        }
      }
    } catch (err) {
      if (err.name !== "AbortError") $("jobs-status").textContent = String(err.message || err);
    } finally {
      if (streams.get(id) === controller) streams.delete(id);
      queueDraw();
    }
  }
  function streamShown() {
    // open a stream for each shown run that has none (a finished one sends its curve and ends)
    const shown = [state.selected, state.compare].filter(Boolean);
    for (const [id, controller] of streams) if (!shown.includes(id)) controller.abort();
    for (const id of shown) {
      const curve = curves.get(id);
      if (!streams.has(id) && (!curve || curve.status === "running" || curve.status === null)) stream(id);
    }
  }
  function aligned(ids, field) {
    // uPlot wants one x column: the union of the runs' steps, null where a run has no point.
    const steps = [...new Set(ids.flatMap((id) => curves.get(id).steps))].sort((a, b) => a - b);
    const columns = ids.map((id) => {
      const c = curves.get(id);
      const at = new Map(c.steps.map((s, i) => [s, c[field][i]]));
      return steps.map((s) => (at.has(s) ? at.get(s) : null));
    });
    return [steps, ...columns];
  }
  function draw(name, target, field) {
    const ids = [state.selected, state.compare].filter((id) => id && curves.has(id));
    const data = aligned(ids, field);
    const key = ids.join("+");
    if (plots[name] && plots[name].key === key) {
      plots[name].plot.setData(data);
    } else {
      if (plots[name]) plots[name].plot.destroy();
      const plot = new uPlot({
        width: Math.max(240, target.clientWidth || 400), height: 220,
        scales: { x: { time: false } },
        series: [{ label: t("step") }].concat(ids.map((id, i) => ({ label: id, stroke: COLORS[i], width: 2, spanGaps: true }))),
        axes: [{ label: t("step") }, { size: 60 }],
        legend: { show: true },
      }, data, target);
      plots[name] = { plot, key };
    }
    target.dataset.points = String(data[0].length);
    target.dataset.series = key;
  }
  function drawAll() {
    draw("loss", $("loss-chart"), "loss");
    draw("lr", $("lr-chart"), "lr");
    draw("tps", $("tps-chart"), "tps");
  }
  window.addEventListener("resize", () => {
    for (const [name, p] of Object.entries(plots)) p.plot.setSize({ width: Math.max(240, $(name + "-chart").clientWidth), height: 220 });
  });

  // --- one job -----------------------------------------------------------------------------------
  function show(job) {
    $("job").hidden = false;
    $("job").dataset.status = job.status;
    $("job-id").textContent = job.id;
    $("job-status").textContent = job.status + (job.error ? " · " + job.error : "");
    $("job-progress").max = Math.max(1, job.total_steps || 0);
    $("job-progress").value = job.step;
    $("job-steps").textContent = job.step + " / " + (job.total_steps || "?");
    $("job-loss").textContent = job.loss == null ? "–" : job.loss.toFixed(4);
    $("job-config").textContent = JSON.stringify(job.config);
    const metrics = (job.result && job.result.metrics) || null;
    $("job-result").textContent = job.result
      ? [job.result.version || job.result.folder, metrics && t("held_out_loss") + " " + metrics.eval_loss_before + " → " + metrics.eval_loss_after].filter(Boolean).join(" · ")
      : "–";
    $("job-cancel").hidden = job.status !== "running";
    $("job-resume").hidden = job.status === "running" || job.status === "succeeded";
    const lines = ["llmos jobs show " + job.id, "llmos jobs logs " + job.id + " -f"];
    if (job.status === "running") lines.push("llmos jobs cancel " + job.id);
    else if (job.status !== "succeeded") lines.push("llmos train resume " + job.id);
    $("job-cli").textContent = lines.join("\n");
  }
  async function logTail(id) {
    const response = await Console.api(jobPath(id, "/logs?offset=" + state.logOffset));
    if (!response.ok) return;
    const text = await response.text();
    state.logOffset = Number(response.headers.get("X-Next-Offset") || state.logOffset);
    if (!text) return;
    const log = $("job-log");
    const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.textContent = (log.textContent + text).slice(-LOG_KEEP);
    if (atEnd) log.scrollTop = log.scrollHeight;
  }
  function compareOptions() {
    const others = state.jobs.filter((j) => j.id !== state.selected);
    $("compare").replaceChildren(el("option", { value: "", text: "–" }),
      ...others.map((j) => el("option", { value: j.id, text: j.id + " · " + j.config.base + " · " + j.status })));
    $("compare").value = state.compare || "";
  }
  function remember() {
    const q = new URLSearchParams({ job: state.selected });
    if (state.compare) q.set("compare", state.compare);
    history.replaceState(null, "", "?" + q);
  }
  async function select(id) {
    state.selected = id;
    if (state.compare === id) state.compare = null;
    state.logOffset = 0;
    $("job-log").textContent = "";
    curves.delete(id);  // read again from step 0: a job started again since may have new steps
    remember();
    compareOptions();
    await refresh();
  }

  // --- the list and the poll ---------------------------------------------------------------------
  async function list() {
    const data = await Console.json("/api/jobs");
    state.jobs = data.jobs.slice().reverse();  // newest first
    $("jobs-status").textContent = state.jobs.length ? "" : t("no_jobs");
    $("jobs").replaceChildren(...state.jobs.map((j) => {
      const link = el("a", { href: "?job=" + encodeURIComponent(j.id), text: j.id });
      link.addEventListener("click", (event) => { event.preventDefault(); select(j.id); });
      return el("tr", { "data-job": j.id, "data-status": j.status }, [
        el("td", {}, [link]),
        el("td", { class: "state", text: j.status }),
        el("td", { text: j.config.base }),
        el("td", { text: j.config.data }),
        el("td", {}, [
          el("progress", { max: String(Math.max(1, j.total_steps || 0)), value: String(j.step), "aria-label": j.step + " / " + j.total_steps }),
          document.createTextNode(" " + j.step + " / " + (j.total_steps || "?")),
        ]),
        el("td", { class: "num", text: j.loss == null ? "–" : j.loss.toFixed(4) }),
        el("td", { text: when(j.created_at) }),
      ]);
    }));
    if (state.selected) compareOptions();
  }
  async function refresh() {
    clearTimeout(state.timer);
    let running = false;
    try {
      await list();
      running = state.jobs.some((j) => j.status === "running");
      if (state.selected) {
        const listed = state.jobs.find((j) => j.id === state.selected);
        if (listed) {
          show(listed);
          const curve = curves.get(listed.id);
          if (curve && listed.status === "running" && curve.status !== "running" && !streams.has(listed.id)) {
            curves.delete(listed.id);  // resumed since its stream ended: follow it again
          }
        }
        streamShown();
        await logTail(state.selected);
      }
    } catch (err) {
      $("jobs-status").textContent = String(err.message || err);
    }
    if (running) state.timer = setTimeout(refresh, 1000);
  }
  async function act(action) {
    const status = $("job-action-status");
    try {
      show(await Console.json(jobPath(state.selected, "/" + action), { method: "POST" }));
      status.textContent = "";
    } catch (err) {
      status.textContent = String(err.message || err);
    }
    refresh();
  }

  // --- the start form ----------------------------------------------------------------------------
  function kind(prop) {
    const types = prop.anyOf ? prop.anyOf.map((p) => p.type).filter((x) => x !== "null") : [prop.type];
    if (prop.enum) return "enum";
    return types[0] || "string";
  }
  function field(name, prop, required) {
    const id = "train-" + name.replace(/_/g, "-");
    const k = kind(prop);
    const title = name + (required ? " *" : "");
    let input;
    if (k === "boolean") {
      input = el("input", { id, type: "checkbox", "data-field": name });
      input.checked = !!prop.default;
      return el("label", { class: "check", title: prop.description || "" }, [input, document.createTextNode(" " + name)]);
    }
    if (k === "enum") input = el("select", { id }, prop.enum.map((v) => el("option", { value: v, text: v })));
    else if (k === "integer" || k === "number") input = el("input", { id, type: "number", step: k === "integer" ? "1" : "any" });
    else input = el("input", { id, placeholder: k === "array" ? t("comma_separated") : "" });
    input.dataset.field = name;
    if (prop.default != null) input.value = String(prop.default);
    if (required) input.required = true;
    if (name === "base") input.setAttribute("list", "train-bases");
    if (name === "data") input.setAttribute("list", "train-datasets");
    return el("div", {}, [el("label", { for: id, text: title, title: prop.description || "" }), input,
      el("small", { class: "muted", text: prop.description || "" })]);
  }
  function values() {
    // The fields that differ from their defaults (what a person would type), in schema order.
    const props = state.schema.properties;
    const out = {};
    for (const input of document.querySelectorAll("#train-form [data-field]")) {
      const name = input.dataset.field;
      const prop = props[name] || {};
      const k = name === "nproc" ? "integer" : kind(prop);
      let value;
      if (k === "boolean") value = input.checked;
      else if (input.value.trim() === "") continue;
      else if (k === "integer" || k === "number") value = Number(input.value);
      else if (k === "array") value = input.value.split(",").map((s) => s.trim()).filter(Boolean);
      else value = input.value.trim();
      const fallback = name === "nproc" ? 1 : prop.default;
      if (JSON.stringify(value) === JSON.stringify(fallback)) continue;
      out[name] = value;
    }
    return out;
  }
  function equivalents() {
    const v = values();
    const parts = ["llmos train"];
    for (const [name, value] of Object.entries(v)) {
      const flag = "--" + name.replace(/_/g, "-");
      if (value === true) parts.push(flag);
      else if (value === false) parts.push("--no-" + flag.slice(2));
      else parts.push(flag, quote(Array.isArray(value) ? value.join(",") : String(value)));
    }
    parts.push("--detach");
    $("train-cli").textContent = parts.join(" ");
    // JSON strings and lists are valid YAML, so each value is written as JSON.
    $("train-yaml").textContent = Object.entries(v).filter(([name]) => name !== "nproc")
      .map(([name, value]) => name + ": " + JSON.stringify(value)).join("\n");
  }
  async function buildForm() {
    state.schema = await Console.json("/api/jobs/schema");
    const required = new Set(state.schema.required || []);
    const props = state.schema.properties;
    const main = MAIN.filter((n) => props[n]).map((n) => field(n, props[n], required.has(n)));
    const more = Object.keys(props).filter((n) => !MAIN.includes(n)).map((n) => field(n, props[n], required.has(n)));
    more.push(field("nproc", { type: "integer", default: 1, description: t("nproc_explain") }, false));
    $("train-fields").replaceChildren(...main, el("datalist", { id: "train-bases" }), el("datalist", { id: "train-datasets" }));
    $("train-more").replaceChildren(...more);
    equivalents();
    const suggestions = [];
    if (Console.allows("models:read")) {
      suggestions.push(Console.json("/api/models").then((d) => $("train-bases").replaceChildren(
        ...d.models.map((m) => el("option", { value: m.name })))));
    }
    if (Console.allows("datasets")) {
      suggestions.push(Console.json("/api/datasets").then((d) => $("train-datasets").replaceChildren(
        ...d.datasets.map((x) => el("option", { value: x.ref })))));
    }
    await Promise.all(suggestions.map((p) => p.catch(() => {})));
  }
  async function start(event) {
    event.preventDefault();
    const status = $("train-status");
    $("train-start").disabled = true;
    try {
      const job = await Console.json("/api/jobs", { method: "POST", json: values() });
      status.textContent = t("started") + " " + job.id;
      await select(job.id);
    } catch (err) {
      status.textContent = String(err.message || err);
    } finally {
      $("train-start").disabled = false;
    }
  }

  $("train-form").addEventListener("input", equivalents);
  $("train-form").addEventListener("change", equivalents);
  $("train-form").addEventListener("submit", start);
  $("job-cancel").addEventListener("click", () => act("cancel"));
  $("job-resume").addEventListener("click", () => act("resume"));
  $("compare").addEventListener("change", () => {
    state.compare = $("compare").value || null;
    remember();
    refresh();
  });
  window.Training = { data: (name) => (plots[name] ? plots[name].plot.data : null) };  // for tests
  const wanted = new URLSearchParams(location.search);
  state.selected = wanted.get("job");
  state.compare = wanted.get("compare");
  buildForm().catch((err) => { $("train-status").textContent = String(err.message || err); });
  refresh();
});
