// Batches: the OpenAI Files + Batch API. A JSONL file is prepared as `llmos batch submit FILE
// --model M` prepares it (each line gets POST, the endpoint and, when its body names none, the
// model), uploaded (POST /v1/files, purpose=batch) and started (POST /v1/batches). The list and the
// selected batch are polled while anything runs; output and error files download through
// GET /v1/files/{id}/content with the session's key. ?id=batch_... selects a batch.
"use strict";
Console.onReady(() => {
  const { el, t } = Console;
  const $ = (id) => document.getElementById(id);
  const ENDPOINTS = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"];
  const FINAL = ["completed", "failed", "expired", "cancelled"];
  const PAGE = 20;
  const state = { selected: null, shown: PAGE, timer: null };

  function when(seconds) {
    if (!seconds) return "–";
    const d = new Date(seconds * 1000);
    return d.toLocaleDateString() + " " + d.toLocaleTimeString();
  }
  function counts(b) {
    const c = b.request_counts;
    return (c.completed + c.failed) + " / " + c.total + (c.failed ? " · " + c.failed + " " + t("failed") : "");
  }
  function bar(b) {
    const c = b.request_counts;
    return el("progress", { max: String(Math.max(1, c.total)), value: String(c.completed + c.failed), "aria-label": counts(b) });
  }
  function quote(s) { return /^[\w./:@-]+$/.test(s) ? s : "'" + s.replace(/'/g, "'\\''") + "'"; }

  function submitCommand() {
    const file = $("batch-file").files[0];
    const parts = ["llmos batch submit", quote(file ? file.name : "requests.jsonl")];
    if ($("batch-model").value) parts.push("--model", quote($("batch-model").value));
    parts.push("--endpoint", $("batch-endpoint").value, "--url", location.origin);
    $("batch-cli").textContent = parts.join(" ");
  }

  // The same rewrite as the CLI's `prepare`: a line that is not a JSON object stops the upload.
  function prepare(text, endpoint, model) {
    const out = [];
    text.split(/\r?\n/).forEach((line, i) => {
      if (!line.trim()) return;
      let item;
      try { item = JSON.parse(line); } catch (err) { throw new Error(t("line") + " " + (i + 1) + ": " + err.message); }
      if (item === null || typeof item !== "object" || Array.isArray(item)) throw new Error(t("line") + " " + (i + 1) + ": " + t("not_an_object"));
      if (item.method === undefined) item.method = "POST";
      if (item.url === undefined) item.url = endpoint;
      if (model && item.body && typeof item.body === "object" && item.body.model === undefined) item.body.model = model;
      out.push(JSON.stringify(item));
    });
    if (!out.length) throw new Error(t("no_requests"));
    return out.join("\n") + "\n";
  }

  async function start(event) {
    event.preventDefault();
    const status = $("batch-form-status");
    const file = $("batch-file").files[0];
    const endpoint = $("batch-endpoint").value;
    $("batch-start").disabled = true;
    try {
      const data = prepare(await file.text(), endpoint, $("batch-model").value);
      const form = new FormData();
      form.append("purpose", "batch");
      form.append("file", new Blob([data], { type: "application/jsonl" }), file.name);
      status.textContent = t("uploading") + " " + file.name + "…";
      const uploaded = await Console.json("/v1/files", { method: "POST", body: form });
      const batch = await Console.json("/v1/batches", {
        method: "POST", json: { input_file_id: uploaded.id, endpoint, completion_window: "24h" },
      });
      status.textContent = t("started") + " " + batch.id;
      await select(batch.id);
    } catch (err) {
      status.textContent = String(err.message || err);
    } finally {
      $("batch-start").disabled = false;
    }
  }

  async function list() {
    const data = await Console.json("/v1/batches?limit=" + state.shown);
    $("batches-status").textContent = data.data.length ? "" : t("no_batches");
    $("batches-more").hidden = !data.has_more;
    $("batches").replaceChildren(...data.data.map((b) => {
      const link = el("a", { href: "?id=" + encodeURIComponent(b.id), text: b.id });
      link.addEventListener("click", (event) => { event.preventDefault(); select(b.id); });
      return el("tr", { "data-batch": b.id, "data-status": b.status }, [
        el("td", {}, [link]),
        el("td", { class: "state", text: b.status }),
        el("td", { text: b.endpoint }),
        el("td", {}, [bar(b), document.createTextNode(" " + counts(b))]),
        el("td", { text: when(b.created_at) }),
      ]);
    }));
    return data.data.some((b) => !FINAL.includes(b.status));
  }

  function show(b) {
    $("batch").hidden = false;
    $("batch").dataset.status = b.status;
    $("batch-id").textContent = b.id;
    $("batch-status").textContent = b.status;
    $("batch-endpoint-shown").textContent = b.endpoint;
    const c = b.request_counts;
    $("batch-progress").max = Math.max(1, c.total);
    $("batch-progress").value = c.completed + c.failed;
    $("batch-counts").textContent = counts(b);
    $("batch-input").textContent = b.input_file_id;
    const stamps = ["created", "in_progress", "finalizing", "completed", "failed", "cancelling", "cancelled", "expired"];
    $("batch-times").textContent = stamps.filter((s) => b[s + "_at"]).map((s) => s.replace("_", " ") + " " + when(b[s + "_at"])).join(" · ");
    $("batch-metadata").textContent = Object.entries(b.metadata || {}).map(([k, v]) => k + "=" + v).join(", ") || "–";
    $("download-output").hidden = !b.output_file_id;
    $("download-errors").hidden = !b.error_file_id;
    $("batch-cancel").hidden = FINAL.includes(b.status) || b.status === "cancelling";
    const errors = (b.errors && b.errors.data) || [];
    $("batch-errors-box").hidden = !errors.length;
    $("batch-errors").replaceChildren(...errors.map((e) => el("li", {
      "data-line": String(e.line ?? ""), text: (e.line ? t("line") + " " + e.line + ": " : "") + e.message + (e.code ? " (" + e.code + ")" : ""),
    })));
    const lines = ["llmos batch show " + b.id + " --url " + location.origin];
    if (!FINAL.includes(b.status)) lines.push("llmos batch cancel " + b.id + " --url " + location.origin);
    if (b.output_file_id) lines.push("llmos batch results " + b.id + " -o " + b.id + ".jsonl --url " + location.origin);
    if (b.error_file_id) lines.push("llmos batch results " + b.id + " --errors -o " + b.id + "-errors.jsonl --url " + location.origin);
    $("batch-show-cli").textContent = lines.join("\n");
  }

  async function select(id) {
    state.selected = id;
    history.replaceState(null, "", "?id=" + encodeURIComponent(id));
    await refresh();
  }

  async function refresh() {
    clearTimeout(state.timer);
    let running = false;
    try {
      // The selected batch is read before the list and shown after it, so the list is never
      // older than the detail beside it (a batch shown completed is completed in its row too).
      const b = state.selected ? await Console.json("/v1/batches/" + encodeURIComponent(state.selected)) : null;
      running = await list();
      if (b) {
        show(b);
        running = running || !FINAL.includes(b.status);
      }
    } catch (err) {
      $("batches-status").textContent = String(err.message || err);
    }
    // Poll only while something runs: a finished list costs nothing to leave open.
    if (running) state.timer = setTimeout(refresh, 1000);
  }

  async function download(which) {
    const status = $("batch-action-status");
    try {
      const b = await Console.json("/v1/batches/" + encodeURIComponent(state.selected));
      const fileId = which === "output" ? b.output_file_id : b.error_file_id;
      // A plain link cannot send the key: fetch the file and hand the browser a blob to save.
      const response = await Console.api("/v1/files/" + encodeURIComponent(fileId) + "/content");
      if (!response.ok) throw new Error(response.status + " " + response.statusText);
      const name = b.id + (which === "output" ? "-output" : "-errors") + ".jsonl";
      const link = el("a", { href: URL.createObjectURL(await response.blob()), download: name });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(link.href), 1000);
      status.textContent = "";
    } catch (err) {
      status.textContent = String(err.message || err);
    }
  }

  async function cancel() {
    const status = $("batch-action-status");
    $("batch-cancel").disabled = true;
    try {
      show(await Console.json("/v1/batches/" + encodeURIComponent(state.selected) + "/cancel", { method: "POST" }));
      status.textContent = "";
    } catch (err) {
      status.textContent = String(err.message || err);
    } finally {
      $("batch-cancel").disabled = false;
    }
    refresh();
  }

  async function pickers() {
    let tasks = [];
    const [models] = await Promise.all([
      Console.json("/v1/models"),
      Console.json("/v1/tasks").then((list) => { tasks = list; }).catch(() => {}),  // tasks are optional
    ]);
    const endpoints = ENDPOINTS.concat(tasks.map((task) => "/v1/tasks/" + task.name));
    $("batch-endpoint").replaceChildren(...endpoints.map((e) => el("option", { value: e, text: e })));
    $("batch-model").append(...models.data.map((m) => el("option", { value: m.id, text: m.id })));
    submitCommand();
  }

  $("batch-form").addEventListener("submit", start);
  for (const id of ["batch-file", "batch-endpoint", "batch-model"]) $(id).addEventListener("change", submitCommand);
  $("batches-more").addEventListener("click", () => { state.shown += PAGE; refresh(); });
  $("download-output").addEventListener("click", () => download("output"));
  $("download-errors").addEventListener("click", () => download("errors"));
  $("batch-cancel").addEventListener("click", cancel);
  pickers().catch((err) => { $("batch-form-status").textContent = String(err.message || err); });
  state.selected = new URLSearchParams(location.search).get("id");
  refresh();
});
