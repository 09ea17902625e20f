// Tasks: a form per task built from its input schema (GET /v1/tasks), run with POST /v1/tasks/{task}.
// NER entities are marked in the text, POS tags sit in a row under the words, tokenize shows each
// token's boundaries and id; every other task shows its output fields. Offsets from the server are
// in code points, so the text is indexed as an array of code points, not UTF-16 units. "Run on a
// dataset" sends the same task and options over every row of a dataset version as a batch
// (POST /api/datasets/{ref}/task-batch) and follows its progress (GET /v1/batches/{id}).
"use strict";
Console.onReady(() => {
  const { el, t } = Console;
  const $ = (id) => document.getElementById(id);
  let tasks = new Map();

  function field(name, schema, required) {
    const id = "task-in-" + name;
    const label = el("label", { for: id, text: schema.title || name });
    let input;
    if (schema.type === "boolean") {
      input = el("input", { id, type: "checkbox", "data-field": name, "data-kind": "boolean" });
      if (schema.default) input.checked = true;
      return el("label", { class: "check" }, [input, document.createTextNode(" " + (schema.title || name))]);
    }
    if (schema.type === "array") {
      input = el("input", { id, "data-field": name, "data-kind": "list", placeholder: t("comma_separated") });
    } else if (schema.enum) {
      input = el("select", { id, "data-field": name }, schema.enum.map((v) => el("option", { value: v, text: v })));
    } else if (schema.type === "integer" || schema.type === "number") {
      input = el("input", { id, type: "number", "data-field": name, "data-kind": "number" });
    } else if (name === "text" || name === "context" || name === "code") {
      input = el("textarea", { id, rows: "4", "data-field": name });
    } else {
      input = el("input", { id, "data-field": name });
    }
    if (schema.default !== undefined && input.type !== "checkbox") input.value = String(schema.default);
    if (required) input.required = true;
    return el("div", {}, [label, input]);
  }
  function form() {
    const spec = tasks.get($("task").value);
    if (!spec) return;
    const schema = spec.input_schema;
    const required = new Set(schema.required || []);
    $("task-about").textContent = t("spec_version") + " " + spec.version;
    $("task-fields").replaceChildren(...Object.entries(schema.properties || {}).map(([name, prop]) => {
      const resolved = prop.$ref ? schema.$defs[prop.$ref.split("/").pop()] : (prop.anyOf ? prop.anyOf.find((p) => p.type !== "null") : prop);
      return field(name, Object.assign({ title: prop.title, default: prop.default }, resolved), required.has(name));
    }));
  }
  function input() {
    const item = {};
    for (const node of $("task-fields").querySelectorAll("[data-field]")) {
      const name = node.dataset.field;
      if (node.dataset.kind === "boolean") item[name] = node.checked;
      else if (node.value === "") continue;
      else if (node.dataset.kind === "list") item[name] = node.value.split(",").map((x) => x.trim()).filter(Boolean);
      else if (node.dataset.kind === "number") item[name] = Number(node.value);
      else item[name] = node.value;
    }
    return item;
  }

  function marked(text, spans, make) {
    // text with each [start, end) span (code points) replaced by make(span, piece). A span over
    // characters an earlier one already showed (the byte-level pieces of one character) gets only
    // what is new, often "".
    const chars = Array.from(text);
    const out = [];
    let at = 0;
    for (const span of [...spans].sort((a, b) => a.start - b.start)) {
      if (span.start > at) out.push(document.createTextNode(chars.slice(at, span.start).join("")));
      out.push(make(span, chars.slice(Math.max(at, span.start), span.end).join("")));
      at = Math.max(at, span.end);
    }
    if (at < chars.length) out.push(document.createTextNode(chars.slice(at).join("")));
    return out;
  }
  const views = {
    ner(item, output) {
      const text = el("p", { class: "ner" }, marked(item.text, output.entities, (e, piece) =>
        el("mark", { "data-label": e.label || "", "data-start": String(e.start), "data-end": String(e.end), title: e.label || "" },
          [document.createTextNode(piece), el("span", { class: "tag", text: e.label || "?" })])));
      const none = output.entities.length ? [] : [el("p", { class: "muted", text: t("no_entities") })];
      return [text, ...none];
    },
    tokenize(item, output) {
      return [
        el("p", { class: "tokens" }, marked(item.text, output.tokens, (tok, piece) => el("span", {
          class: "tok", "data-id": String(tok.id), "data-start": String(tok.start), "data-end": String(tok.end), title: "id " + tok.id + " · " + tok.start + "–" + tok.end,
        }, [el("span", { class: "tok-text", text: piece }), el("sub", { text: String(tok.id) })]))),
        el("p", { class: "muted", text: output.tokens.length + " " + t("tokens") + " · " + output.words.length + " " + t("words") }),
      ];
    },
    pos(item, output) {
      return [el("p", { class: "pos" }, output.tokens.map((tok) => el("span", { class: "pos-word", "data-tag": tok.tag }, [
        el("span", { text: tok.text }), el("small", { text: tok.tag }),
      ])))];
    },
  };
  function generic(item, output) {
    return [el("table", { class: "table facts" }, [el("tbody", {}, Object.entries(output).map(([k, v]) =>
      el("tr", {}, [el("th", { text: k }), el("td", { text: typeof v === "string" ? v : JSON.stringify(v) })])))])];
  }

  async function run() {
    const task = $("task").value;
    const item = input();
    const body = { model: $("task-model").value, input: item, temperature: Number($("task-temperature").value || 0) };
    if ($("task-seed").value !== "") body.seed = Number($("task-seed").value);
    $("task-status").textContent = t("running_task");
    $("run-task").disabled = true;
    try {
      const data = await Console.json("/v1/tasks/" + encodeURIComponent(task), { method: "POST", json: body });
      const output = data.results[0].output;
      $("task-version").textContent = "· " + data.task + " " + data.version + " · " + data.model;
      $("task-view").dataset.task = task;
      $("task-view").replaceChildren(...(views[task] || generic)(item, output));
      $("task-json").textContent = JSON.stringify(data, null, 2);
      $("task-result").hidden = false;
      $("task-status").textContent = data.usage.total_tokens ? data.usage.total_tokens + " " + t("tokens") : "";
    } catch (err) {
      $("task-status").textContent = String(err);
    } finally {
      $("run-task").disabled = false;
    }
  }

  // --- run on a dataset ----------------------------------------------------------------------
  let datasets = new Map();
  function fill(select, values, keep) {
    const before = select.value;
    select.replaceChildren(...values.map(([value, text]) => el("option", { value, text })));
    if (keep && values.some(([v]) => v === before)) select.value = before;
  }
  function chooseDataset() {
    const v = datasets.get($("run-dataset").value);
    if (!v) return;
    fill($("run-split"), [["", t("all_splits")], ...Object.keys(v.splits).map((s) => [s, s + " (" + v.splits[s].rows + ")"])], true);
    const main = (tasks.get($("task").value) || {}).main_field || "text";
    fill($("run-column"), v.columns.filter((c) => c !== "id").map((c) => [c, c]), true);
    if (v.columns.includes(main) && !$("run-column").dataset.touched) $("run-column").value = main;
    datasetCommand();
  }
  function datasetBody() {
    const spec = tasks.get($("task").value) || {};
    const options = input();
    delete options[spec.main_field || "text"]; // each row's column takes its place
    const body = { task: $("task").value, model: $("task-model").value, column: $("run-column").value, options,
      temperature: Number($("task-temperature").value || 0) };
    if ($("run-split").value) body.split = $("run-split").value;
    if ($("run-limit").value) body.limit = Number($("run-limit").value);
    return body;
  }
  function datasetCommand() {
    if (!$("run-dataset").value) return;
    const auth = Console.who().auth === "key" ? ' -H "Authorization: Bearer $LLMOS_API_KEY"' : "";
    $("run-curl").textContent = "curl -X POST" + auth + ' -H "Content-Type: application/json" ' + location.origin +
      "/api/datasets/" + $("run-dataset").value + "/task-batch -d '" + JSON.stringify(datasetBody()).replace(/'/g, "'\\''") + "'";
  }
  async function follow(id) {
    for (;;) {
      const b = await Console.json("/v1/batches/" + encodeURIComponent(id));
      const c = b.request_counts || { total: 0, completed: 0, failed: 0 };
      $("run-batch-status").textContent = b.status;
      $("run-bar").max = Math.max(1, c.total);
      $("run-bar").value = c.completed + c.failed;
      $("run-counts").textContent = c.completed + " / " + c.total + (c.failed ? " · " + c.failed + " " + t("failed") : "");
      if (["completed", "failed", "cancelled", "expired"].includes(b.status)) return b;
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
  async function runOnDataset() {
    $("run-error").textContent = "";
    $("run-dataset-go").disabled = true;
    try {
      const ref = $("run-dataset").value;
      const batch = await Console.json("/api/datasets/" + encodeURIComponent(ref) + "/task-batch", { method: "POST", json: datasetBody() });
      $("run-progress").hidden = false;
      $("run-batch").textContent = batch.id;
      $("run-batch").href = "/ui/batches?id=" + encodeURIComponent(batch.id);
      await follow(batch.id);
    } catch (err) {
      $("run-error").textContent = String(err.message || err);
    } finally {
      $("run-dataset-go").disabled = false;
    }
  }
  async function startDatasets() {
    if (!Console.allows("datasets") || !Console.allows("inference")) return;
    const data = await Console.json("/api/datasets");
    datasets = new Map(data.datasets.map((v) => [v.ref, v]));
    if (!datasets.size) return;
    fill($("run-dataset"), [...datasets.keys()].map((ref) => [ref, ref]));
    $("dataset-run").hidden = false;
    chooseDataset();
  }
  $("run-dataset").addEventListener("change", chooseDataset);
  $("run-column").addEventListener("change", () => { $("run-column").dataset.touched = "1"; datasetCommand(); });
  $("dataset-form").addEventListener("input", datasetCommand);
  $("dataset-form").addEventListener("change", datasetCommand);
  $("task-form").addEventListener("input", datasetCommand);
  $("dataset-form").addEventListener("submit", (event) => { event.preventDefault(); runOnDataset(); });

  async function start() {
    const [models, list] = await Promise.all([Console.json("/v1/models"), Console.json("/v1/tasks")]);
    $("task-model").replaceChildren(...models.data.map((m) => el("option", { value: m.id, text: m.id })));
    tasks = new Map(list.map((spec) => [spec.name, spec]));
    $("task").replaceChildren(...list.map((spec) => el("option", { value: spec.name, text: spec.name })));
    const wanted = new URLSearchParams(location.search).get("task");
    if (wanted && tasks.has(wanted)) $("task").value = wanted;
    form();
    await startDatasets();
  }
  $("task").addEventListener("change", () => {
    history.replaceState(null, "", "?task=" + encodeURIComponent($("task").value));
    form();
    chooseDataset();
  });
  $("task-form").addEventListener("submit", (event) => { event.preventDefault(); run(); });
  start().catch((err) => { $("task-status").textContent = String(err); });
});
