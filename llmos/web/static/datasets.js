// Datasets: every dataset (GET /api/datasets, grouped by name), one version's schema, splits and
// lineage, a preview paged on the server (GET /rows?offset&limit: the browser holds one page), and
// its token-length histogram and label balance (GET /stats); clean and split forms that write a new
// version (POST /clean, /split) and show its report and the equivalent CLI. ?name=NAME:N selects a
// version.
"use strict";
Console.onReady(() => {
  const { el, t } = Console;
  const $ = (id) => document.getElementById(id);
  const PAGE = 20;
  const state = { ref: null, version: null, split: "", offset: 0, total: 0 };
  let byName = new Map();

  function path(ref, tail) { return "/api/datasets/" + encodeURIComponent(ref) + (tail || ""); }
  function when(iso) { return (iso || "").slice(0, 19).replace("T", " "); }
  function cell(value) {
    if (value == null) return "";
    if (Array.isArray(value)) return value.map((m) => m.role + ": " + m.content).join("\n");  // chat messages
    return String(value);
  }
  function bars(target, entries) {
    // [label, count] rows, each with a <meter> as its bar (no inline styles under the CSP).
    const max = Math.max(1, ...entries.map(([, count]) => count));
    const total = entries.reduce((sum, [, count]) => sum + count, 0) || 1;
    target.replaceChildren(...entries.map(([label, count]) => el("tr", { "data-bar": label }, [
      el("th", { text: label }),
      el("td", {}, [el("meter", { min: "0", max: String(max), value: String(count), "aria-label": label })]),
      el("td", { class: "num", text: count.toLocaleString() }),
      el("td", { class: "num muted", text: (100 * count / total).toFixed(1) + "%" }),
    ])));
  }

  async function list() {
    const data = await Console.json("/api/datasets");
    byName = new Map();
    for (const v of data.datasets) byName.set(v.name, (byName.get(v.name) || []).concat([v]));
    $("datasets-status").textContent = byName.size ? "" : t("no_datasets");
    $("datasets").replaceChildren(...[...byName.values()].map((versions) => {
      const latest = versions[versions.length - 1];
      const link = el("a", { href: "?name=" + encodeURIComponent(latest.ref), text: latest.name });
      link.addEventListener("click", (event) => { event.preventDefault(); select(latest.ref); });
      return el("tr", { "data-dataset": latest.name }, [
        el("td", {}, [link]),
        el("td", { text: versions.map((v) => v.version).join(", ") }),
        el("td", { text: latest.schema }),
        el("td", { class: "num", text: latest.rows.toLocaleString() }),
        el("td", { text: when(latest.created_at) }),
      ]);
    }));
  }

  function describe(v) {
    $("dataset-ref").textContent = v.ref;
    $("schema").textContent = v.schema;
    $("columns").replaceChildren(...v.columns.map((c) => el("code", { class: "tag", text: c })));
    $("splits").textContent = Object.entries(v.splits).map(([s, x]) => s + " " + x.rows.toLocaleString() + " (" + Console.format.bytes(x.size) + ")").join(" · ");
    $("dataset-digest").textContent = v.digest;
    const op = v.operation || {};
    $("operation").textContent = [op.name, JSON.stringify(op.options || {}), v.created_by, when(v.created_at)].filter(Boolean).join(" · ");
    $("lineage").replaceChildren(...(v.parents.length ? v.parents : [{}]).map((p) => el("div", {
      text: p.relation ? p.relation + " " + (p.ref || p.path || "") : "–",
    })));
    $("annotate-link").href = "/ui/annotation?name=" + encodeURIComponent(v.ref);
    const versions = byName.get(v.name) || [v];
    $("version").replaceChildren(...versions.map((x) => el("option", { value: x.ref, text: String(x.version) })));
    $("version").value = v.ref;
    $("split").replaceChildren(el("option", { value: "", text: t("all_splits") }),
      ...Object.keys(v.splits).map((s) => el("option", { value: s, text: s })));
  }

  async function page() {
    const q = new URLSearchParams({ offset: state.offset, limit: PAGE });
    if (state.split) q.set("split", state.split);
    const data = await Console.json(path(state.ref, "/rows?" + q));
    state.total = data.total;
    const columns = state.version.columns;
    $("preview-head").replaceChildren(...columns.map((c) => el("th", { text: c })));
    $("preview").replaceChildren(...data.rows.map((row) => el("tr", { "data-row": String(row.id) },
      columns.map((c) => el("td", { text: cell(row[c]) })))));
    const first = data.rows.length ? state.offset + 1 : 0;
    $("page-status").textContent = t("rows") + " " + first.toLocaleString() + "–" + (state.offset + data.rows.length).toLocaleString() + " " + t("of") + " " + data.total.toLocaleString();
    $("prev-page").disabled = state.offset === 0;
    $("next-page").disabled = state.offset + PAGE >= data.total;
  }

  async function stats() {
    const data = await Console.json(path(state.ref, "/stats?bins=10"));
    const tokens = data.tokens;
    $("token-summary").textContent = tokens.rows
      ? t("tokenizer") + " " + tokens.tokenizer + " · min " + tokens.min + " · p50 " + tokens.p50 + " · p90 " + tokens.p90 + " · max " + tokens.max + " · " + t("total") + " " + tokens.total.toLocaleString()
      : "";
    bars($("histogram"), tokens.histogram.map((b) => [b.lo === b.hi ? String(b.lo) : b.lo + "–" + b.hi, b.count]));
    $("labels-none").hidden = !!data.labels;
    bars($("label-balance"), Object.entries(data.labels || {}));
  }

  async function select(ref) {
    const status = $("datasets-status");
    try {
      state.version = await Console.json(path(ref));
      state.ref = state.version.ref;
      state.split = "";
      state.offset = 0;
      history.replaceState(null, "", "?name=" + encodeURIComponent(state.ref));
      describe(state.version);
      $("split-stratify").checked = state.version.schema === "classification";
      $("split-stratify").disabled = state.version.schema !== "classification";
      $("operation-result").hidden = true;
      commands();
      $("dataset").hidden = false;
      await Promise.all([page(), stats()]);
      status.textContent = "";
    } catch (err) {
      status.textContent = String(err);
    }
  }
  function move(delta) {
    state.offset = Math.max(0, state.offset + delta);
    page().catch((err) => { $("page-status").textContent = String(err); });
  }

  function quote(s) { return /^[\w.:@\/-]+$/.test(s) ? s : "'" + String(s).replace(/'/g, "'\\''") + "'"; }
  function cleanBody() {
    const body = {
      dedup: [["exact", "clean-exact"], ["near", "clean-near"]].filter(([, id]) => $(id).checked).map(([kind]) => kind),
      near_threshold: Number($("clean-threshold").value || 0.8),
      min_chars: Number($("clean-min-chars").value || 0),
      languages: $("clean-languages").value.split(",").map((s) => s.trim()).filter(Boolean),
      pii: $("clean-pii").checked ? "mask" : null,
    };
    if ($("clean-name").value.trim()) body.name = $("clean-name").value.trim();
    return body;
  }
  function splitBody() {
    const body = { test: Number($("split-test").value || 0.1), seed: Number($("split-seed").value || 0) };
    body.stratify = $("split-stratify").checked;
    if ($("split-name").value.trim()) body.name = $("split-name").value.trim();
    return body;
  }
  function commands() {
    if (!state.ref) return;
    const c = cleanBody();
    let cli = "llmos data clean " + quote(state.ref) + " --dedup " + (c.dedup.join(",") || "none");
    if (c.dedup.includes("near")) cli += " --near-threshold " + c.near_threshold;
    if (c.min_chars) cli += " --min-chars " + c.min_chars;
    if (c.languages.length) cli += " --lang " + quote(c.languages.join(","));
    if (c.pii) cli += " --pii mask";
    if (c.name) cli += " --name " + quote(c.name);
    $("clean-cli").textContent = cli;
    const s = splitBody();
    $("split-cli").textContent = "llmos data split " + quote(state.ref) + " --test " + s.test + " --seed " + s.seed +
      (s.stratify ? " --stratify" : " --no-stratify") + (s.name ? " --name " + quote(s.name) : "");
  }
  function showReport(version) {
    const report = version.report || {};
    const link = $("operation-ref");
    link.textContent = version.ref;
    link.href = "?name=" + encodeURIComponent(version.ref);
    $("operation-summary").textContent = version.is_new
      ? t("new_version") + " " + version.ref + " · " + version.rows.toLocaleString() + " " + t("rows").toLowerCase()
      : version.ref + " " + t("nothing_new");
    const rows = [];
    if (report.rows_in !== undefined) rows.push([t("rows_in"), report.rows_in.toLocaleString()], [t("rows_out"), report.rows_out.toLocaleString()]);
    for (const key of ["removed", "masked", "splits"]) {
      for (const [what, count] of Object.entries(report[key] || {})) rows.push([t(key) + ": " + what, count.toLocaleString()]);
    }
    for (const [reason, examples] of Object.entries(report.examples || {})) {
      for (const e of examples) rows.push([reason + " · id " + e.id, e.text]);
    }
    $("operation-report").replaceChildren(...rows.map(([k, v]) => el("tr", { "data-report": k }, [el("th", { text: k }), el("td", { text: v })])));
    $("operation-result").hidden = false;
  }
  async function operate(verb, body, button) {
    $("operation-error").textContent = "";
    button.disabled = true;
    const label = button.textContent;
    button.textContent = t("working");
    try {
      const version = await Console.json(path(state.ref, "/" + verb), { method: "POST", json: body });
      await list();
      await select(version.ref);
      showReport(version);
    } catch (err) {
      $("operation-error").textContent = String(err);
    } finally {
      button.disabled = false;
      button.textContent = label;
    }
  }
  $("clean-form").addEventListener("submit", (event) => { event.preventDefault(); operate("clean", cleanBody(), $("clean-run")); });
  $("split-form").addEventListener("submit", (event) => { event.preventDefault(); operate("split", splitBody(), $("split-run")); });
  for (const form of ["clean-form", "split-form"]) {
    $(form).addEventListener("input", commands);
    $(form).addEventListener("change", commands);
  }
  $("operation-ref").addEventListener("click", (event) => { event.preventDefault(); select($("operation-ref").textContent); });

  $("version").addEventListener("change", () => select($("version").value));
  $("split").addEventListener("change", () => { state.split = $("split").value; state.offset = 0; move(0); });
  $("prev-page").addEventListener("click", () => move(-PAGE));
  $("next-page").addEventListener("click", () => move(PAGE));
  list().then(() => {
    const wanted = new URLSearchParams(location.search).get("name");
    if (wanted) select(wanted);
  }).catch((err) => { $("datasets-status").textContent = String(err); });
});
