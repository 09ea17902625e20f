// Annotation: one record at a time from a dataset version, labelled by number key or button; each
// label is saved at once (POST /annotations), u or Backspace takes the last one back (DELETE) and
// shows its record again. Progress and review counts come from GET /annotations, agreement between
// annotators from GET /agreement; "save" writes a new version from the labels (POST
// /apply-annotations). Rows arrive a page at a time from the server (GET /rows), never all at once.
"use strict";
Console.onReady(() => {
  const { el, t } = Console;
  const $ = (id) => document.getElementById(id);
  const FETCH = 50;
  const ANNOTATOR = "llmos.annotator";
  const s = { ref: null, version: null, annotator: "", labels: [], done: new Set(), queue: [], next: 0, undo: [] };
  let work = Promise.resolve();  // key presses run one after another, in the order they came

  function path(tail) { return "/api/datasets/" + encodeURIComponent(s.ref) + tail; }
  function status(text) { $("record-status").textContent = text; }

  async function datasets() {
    const data = await Console.json("/api/datasets");
    $("ann-dataset").replaceChildren(...data.datasets.map((v) => el("option", { value: v.ref, text: v.ref + " · " + v.schema + " · " + v.rows.toLocaleString() })));
    const wanted = new URLSearchParams(location.search).get("name");
    if (wanted && data.datasets.some((v) => v.ref === wanted)) $("ann-dataset").value = wanted;
    else if (data.datasets.length) $("ann-dataset").value = data.datasets[data.datasets.length - 1].ref;
    await suggestLabels();
  }
  async function suggestLabels() {
    // a classification dataset's own labels make the default label set
    const ref = $("ann-dataset").value;
    if (!ref) return;
    const stats = await Console.json("/api/datasets/" + encodeURIComponent(ref) + "/stats?bins=1");
    if (stats.labels) $("label-set").value = Object.keys(stats.labels).join(",");
  }

  async function fill() {
    // the next records this annotator has not labelled, a page of rows at a time
    while (s.queue.length < 2 && s.next < s.version.rows) {
      const page = await Console.json(path("/rows?offset=" + s.next + "&limit=" + FETCH));
      s.next += FETCH;
      s.queue.push(...page.rows.filter((row) => !s.done.has(row.id)));
    }
  }
  function show() {
    const row = s.queue[0];
    $("progress").max = s.version.rows;
    $("progress").value = s.done.size;
    $("progress-text").textContent = s.done.size + " " + t("of") + " " + s.version.rows + " " + t("labelled_by") + " " + s.annotator;
    $("undo").disabled = !s.undo.length;
    $("queue-done").hidden = !!row;
    $("label-buttons").hidden = !row;
    $("record").dataset.row = row ? String(row.id) : "";
    $("record-title").textContent = row ? s.ref + " · id " + row.id : "";
    const fields = [];
    for (const [name, value] of Object.entries(row || {})) {
      if (name === "id" || name === "label") continue;  // an existing label would anchor the annotator
      const text = Array.isArray(value) ? value.map((m) => m.role + ": " + m.content).join("\n") : String(value ?? "");
      fields.push(el("dt", { text: name }), el("dd", { text }));
    }
    $("record-fields").replaceChildren(...fields);
  }
  async function refreshStats() {
    const [labels, agreement] = await Promise.all([Console.json(path("/annotations")), Console.json(path("/agreement"))]);
    const counts = { pending: 0, accepted: 0, rejected: 0 };
    for (const a of labels.annotations) counts[a.status] = (counts[a.status] || 0) + 1;
    $("review-counts").textContent = Object.entries(counts).map(([k, n]) => t(k) + " " + n).join(" · ");
    $("agreement-none").hidden = agreement.pairs.length > 0;
    $("agreement").replaceChildren(...agreement.pairs.map((p) => el("tr", { "data-pair": p.annotators.join("/") }, [
      el("td", { text: p.annotators.join(" / ") }),
      el("td", { class: "num", text: String(p.num_items) }),
      el("td", { class: "num percent", text: p.percent_agreement == null ? "–" : p.percent_agreement.toFixed(1) + "%" }),
      el("td", { class: "num kappa", text: p.kappa == null ? t("undefined") : p.kappa.toFixed(3) }),
    ])));
    return labels;
  }

  async function start() {
    const labels = $("label-set").value.split(",").map((x) => x.trim()).filter(Boolean);
    if (new Set(labels).size < 2 || labels.length > 9) throw new Error(t("label_set_size"));
    s.ref = $("ann-dataset").value;
    s.annotator = $("annotator").value.trim();
    sessionStorage.setItem(ANNOTATOR, s.annotator);
    s.labels = labels;
    s.version = await Console.json("/api/datasets/" + encodeURIComponent(s.ref));
    s.ref = s.version.ref;
    const given = await refreshStats();
    s.done = new Set(given.annotations.filter((a) => a.annotator === s.annotator).map((a) => a.row_id));
    s.queue = []; s.next = 0; s.undo = [];
    await fill();
    $("label-buttons").replaceChildren(...labels.map((label, i) => el("button", {
      type: "button", "data-label": label, text: (i + 1) + " · " + label, onclick: () => enqueue(() => pick(i)),
    })));
    $("session").hidden = false;
    show();
    $("record").focus();
  }
  async function pick(index) {
    const row = s.queue[0];
    if (!row || index >= s.labels.length) return;
    const label = s.labels[index];
    await Console.json(path("/annotations"), { method: "POST", json: { row_id: row.id, label, annotator: s.annotator } });
    s.done.add(row.id);
    s.undo.push(row);
    s.queue.shift();
    status(t("saved_label") + " " + row.id + ": " + label);
    await fill();
    show();
    await refreshStats();
  }
  async function undo() {
    const row = s.undo.pop();
    if (!row) return;
    await Console.json(path("/annotations/" + row.id + "?annotator=" + encodeURIComponent(s.annotator)), { method: "DELETE" });
    s.done.delete(row.id);
    s.queue.unshift(row);
    status(t("undone") + " " + row.id);
    show();
    await refreshStats();
  }
  function enqueue(action) {
    work = work.then(action).catch((err) => status(String(err)));
  }

  document.addEventListener("keydown", (event) => {
    if ($("session").hidden || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.target.closest("input, textarea, select")) return;  // typing, not labelling
    if (/^[1-9]$/.test(event.key)) {
      event.preventDefault();
      enqueue(() => pick(Number(event.key) - 1));
    } else if (event.key === "u" || event.key === "Backspace") {
      event.preventDefault();
      enqueue(undo);
    }
  });
  $("undo").addEventListener("click", () => enqueue(undo));
  $("setup").addEventListener("submit", (event) => {
    event.preventDefault();
    $("setup-status").textContent = "";
    start().catch((err) => { $("setup-status").textContent = String(err); });
  });
  $("ann-dataset").addEventListener("change", () => suggestLabels().catch(() => {}));
  $("save").addEventListener("click", () => enqueue(async () => {
    let made;
    try {
      made = await Console.json(path("/apply-annotations"), { method: "POST", json: {} });
    } catch (err) {
      $("saved").textContent = String(err);
      return;
    }
    const link = el("a", { href: "/ui/datasets?name=" + encodeURIComponent(made.ref), text: made.ref });
    const report = Object.entries(made.report).map(([k, v]) => k + " " + v).join(", ");
    $("saved").replaceChildren(document.createTextNode((made.is_new ? t("saved_as") : t("unchanged")) + " "), link,
      document.createTextNode(" · " + made.rows + " " + t("rows").toLowerCase() + " · " + report));
  }));
  $("annotator").value = sessionStorage.getItem(ANNOTATOR) || Console.who().name || "";
  datasets().catch((err) => { $("setup-status").textContent = String(err); });
});
