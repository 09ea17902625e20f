// Tasks: a form per task built from its input schema (GET /v1/tasks), run with POST /v1/tasks/{task}.
// NER entities are marked in the text, POS tags sit in a row under the words, tokenize shows each
// token's boundaries and id; every other task shows its output fields. Offsets from the server are
// in code points, so the text is indexed as an array of code points, not UTF-16 units.
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

  async function start() {
    const [models, list] = await Promise.all([Console.json("/v1/models"), Console.json("/v1/tasks")]);
    $("task-model").replaceChildren(...models.data.map((m) => el("option", { value: m.id, text: m.id })));
    tasks = new Map(list.map((spec) => [spec.name, spec]));
    $("task").replaceChildren(...list.map((spec) => el("option", { value: spec.name, text: spec.name })));
    const wanted = new URLSearchParams(location.search).get("task");
    if (wanted && tasks.has(wanted)) $("task").value = wanted;
    form();
  }
  $("task").addEventListener("change", () => {
    history.replaceState(null, "", "?task=" + encodeURIComponent($("task").value));
    form();
  });
  $("task-form").addEventListener("submit", (event) => { event.preventDefault(); run(); });
  start().catch((err) => { $("task-status").textContent = String(err); });
});
