// Models: the registry (GET /api/models) with what is loaded (GET /api/ps); load / unload / pin /
// keep-alive through the same API (pin and keep-alive are POST .../load bodies), and for each
// action the equivalent CLI, Python SDK and curl. A row expands to the version's lineage: source,
// parents, datasets, training run, evaluations (GET /api/models/{ref}, /api/evaluations?model=)
// and the name's history (GET /api/models/{name}/history). Above the table, a model from the catalog
// (GET /api/catalog) is pulled through POST /api/pull, whose NDJSON progress lines fill a bar.
"use strict";
Console.onReady(() => {
  const { el, t } = Console;
  const $ = (id) => document.getElementById(id);
  const status = $("models-status");
  const origin = location.origin;
  const expanded = new Set();

  function snippets(action, ref, keepAlive) {
    const auth = Console.who().auth === "key" ? ' -H "Authorization: Bearer $LLMOS_API_KEY"' : "";
    const post = "curl -X POST" + auth + " " + origin + "/api/models/" + ref + "/";
    const json = (body) => "load -H \"Content-Type: application/json\" -d '" + JSON.stringify(body) + "'";
    const sdk = (call) => 'import llmos\nserver = llmos.connect("' + origin + '")\nserver.' + call;
    const name = ref.split(":")[0];
    return {
      load: {
        cli: "# " + t("no_load_command") + "\nllmos run " + ref + ' "hello" --url ' + origin,
        sdk: sdk('load("' + ref + '")'), curl: post + "load",
      },
      unload: { cli: "llmos stop " + ref + " --url " + origin, sdk: sdk('unload("' + ref + '")'), curl: post + "unload" },
      pin: {
        cli: "# " + t("no_pin_command") + "\nllmos serve --model " + ref,
        sdk: sdk('load("' + ref + '", pin=True)'), curl: post + json({ pin: true }),
      },
      unpin: {
        cli: "# " + t("no_pin_command"),
        sdk: sdk('load("' + ref + '", pin=False)'), curl: post + json({ pin: false }),
      },
      "keep-alive": {
        cli: "# " + t("no_keep_alive_command") + "\nllmos serve --keep-alive " + keepAlive,
        sdk: sdk('load("' + ref + '", keep_alive=' + keepAlive + ")"), curl: post + json({ keep_alive: keepAlive }),
      },
      pull: {
        cli: "# " + t("pull_cli_note") + "\nllmos pull " + ref,
        sdk: sdk('pull("' + ref + '", progress=print)'),
        curl: "curl -X POST" + auth + " " + origin + "/api/pull -H \"Content-Type: application/json\" -d '" +
          JSON.stringify({ name: ref }) + "'",
      },
      lineage: {
        cli: "llmos show " + ref + "\nllmos history " + name,
        sdk: sdk('show("' + ref + '")'),
        curl: "curl" + auth + " " + origin + "/api/models/" + ref + "\ncurl" + auth + " " + origin + "/api/models/" + name + "/history",
      },
    }[action];
  }
  function keepAliveOf(ref) {
    const input = document.querySelector('input[data-keep-alive="' + CSS.escape(ref) + '"]');
    return input && input.value !== "" ? Number(input.value) : 300;
  }
  function equivalent(action, ref) {
    const s = snippets(action, ref, keepAliveOf(ref));
    $("equivalent").hidden = false;
    $("equivalent-action").textContent = "· " + action + " " + ref;
    $("eq-cli").textContent = s.cli;
    $("eq-sdk").textContent = s.sdk;
    $("eq-curl").textContent = s.curl;
  }
  async function act(action, ref, button) {
    const body = action === "pin" || action === "unpin" ? { pin: action === "pin" }
      : action === "keep-alive" ? { keep_alive: keepAliveOf(ref) } : null;
    const verb = action === "unload" ? "unload" : "load";
    button.disabled = true;
    status.textContent = t(verb === "load" ? "loading" : "unloading") + " " + ref + "…";
    equivalent(action, ref);
    try {
      await Console.json("/api/models/" + encodeURIComponent(ref) + "/" + verb, body ? { method: "POST", json: body } : { method: "POST" });
      status.textContent = t(verb === "load" ? "loaded" : "unloaded") + " " + ref;
    } catch (err) {
      status.textContent = String(err);
    }
    await refresh();
  }

  function stateText(row) {
    if (!row) return "–";
    const parts = [t("loaded")];
    if (row.pinned) parts.push(t("pinned"));
    if (row.keep_alive == null) parts.push(t("keep_alive") + " ∞");
    else parts.push(t("keep_alive") + " " + row.keep_alive + " s" + (row.expires_in != null ? " (" + t("expires_in") + " " + Math.round(row.expires_in) + " s)" : ""));
    return parts.join(" · ");
  }
  function actions(m, ps, canWrite) {
    const button = (action, label) => {
      const b = el("button", { type: "button", "data-action": action, "data-model": m.ref, text: label });
      b.disabled = !canWrite;
      b.addEventListener("click", () => act(action, m.ref, b));
      return b;
    };
    const loadOrUnload = m.loaded ? "unload" : "load";
    const seconds = el("input", {
      type: "number", class: "seconds", "data-keep-alive": m.ref, "aria-label": t("keep_alive_seconds"),
      title: t("keep_alive_seconds"), value: String(ps ? (ps.keep_alive == null ? -1 : ps.keep_alive) : 300), // -1: forever
    });
    const pin = ps && ps.pinned ? button("unpin", t("unpin")) : button("pin", t("pin"));
    return el("div", { class: "actions" }, [button(loadOrUnload, t(loadOrUnload)), pin, seconds, button("keep-alive", t("keep_alive"))]);
  }

  function facts(pairs) {
    return el("dl", { class: "lineage-facts" }, pairs.filter(([, value]) => value).flatMap(([key, value]) => [
      el("dt", { text: t(key) }), el("dd", { "data-fact": key }, Array.isArray(value) ? value : [value]),
    ]));
  }
  function list(items, text) {
    return items.length ? el("ul", {}, items.map((item) => el("li", {}, [text(item)]))) : null;
  }
  function sourceText(source) {
    if (!source) return null;
    const where = source.path || source.repo || source.package || source.base || "";
    return el("code", { text: source.type + (where ? " " + where : "") + (source.revision ? "@" + source.revision.slice(0, 12) : "") });
  }
  function trainingText(run) {
    if (!run) return null;
    const config = run.config || {};
    const keys = ["base", "method", "max_steps", "lr", "batch_size"].filter((k) => config[k] != null);
    const metrics = Object.entries(run.metrics || {}).map(([k, v]) => k + " " + (typeof v === "number" ? v.toFixed(4) : v));
    return el("span", { text: [t("data") + " " + run.data, ...keys.map((k) => k + " " + config[k]), ...metrics].join(" · ") });
  }
  function evaluationsList(manifest, results, ref) {
    const rows = [...(manifest.evaluations || []), ...results].map((r) => {
      const metrics = Object.entries(r.metrics || {}).map(([k, v]) => k + " " + (typeof v === "number" ? v.toFixed(4) : v));
      return [r.suite, r.task].filter((x) => x && x !== "-").join("/") + ": " + metrics.join(", ");
    });
    if (!rows.length) return null;
    const link = el("a", { href: "/ui/evaluations?model=" + encodeURIComponent(ref), text: t("evaluations") + " →" });
    return el("div", {}, [list(rows, (r) => r), link]);
  }
  function eventText(e) {
    const version = e.version != null ? ":" + e.version : "";
    const from = (e.details && e.details.parents) || [];
    const alias = e.alias ? " @" + e.alias : "";
    return e.created_at.slice(0, 19).replace("T", " ") + " · " + e.actor + " · " + e.action + " " + e.model + version + alias +
      (from.length ? " ← " + from.join(", ") : "");
  }
  function commandDetails(ref) {
    return el("div", { class: "commands" }, ["lineage", "load", "unload", "pin", "keep-alive"].map((action) => {
      const s = snippets(action, ref, keepAliveOf(ref));
      return el("details", { "data-commands": action }, [
        el("summary", { text: t("equivalent_of") + " " + action }),
        el("h3", { text: "CLI" }), el("pre", {}, [el("code", { class: "cli", text: s.cli })]),
        el("h3", { text: "Python SDK" }), el("pre", {}, [el("code", { class: "sdk", text: s.sdk })]),
        el("h3", { text: "curl" }), el("pre", {}, [el("code", { class: "curl", text: s.curl })]),
      ]);
    }));
  }
  async function lineage(m, cell) {
    cell.replaceChildren(el("p", { class: "muted", text: t("loading") + "…" }));
    const path = "/api/models/" + encodeURIComponent(m.ref);
    try {
      const [info, history, evals] = await Promise.all([
        Console.json(path),
        Console.json("/api/models/" + encodeURIComponent(m.name) + "/history"),
        Console.allows("eval") ? Console.json("/api/evaluations?model=" + encodeURIComponent(m.ref)) : { results: [] },
      ]);
      const manifest = info.manifest;
      cell.replaceChildren(facts([
        ["source", sourceText(manifest.source)],
        ["parents", list(info.parents, (p) => el("code", { text: p.relation + " " + p.ref + " " + p.digest.replace("sha256:", "").slice(0, 12) }))],
        ["base_model", manifest.base ? el("code", { text: manifest.base }) : null],
        ["datasets", list(manifest.datasets || [], (d) => el("code", { text: d }))],
        ["training_run", trainingText(manifest.training_run)],
        ["evaluations", evaluationsList(manifest, evals.results, m.ref)],
        ["history", list(history.events, eventText)],
      ]), commandDetails(m.ref));
    } catch (err) {
      cell.replaceChildren(el("p", { class: "error", text: String(err) }));
    }
  }
  function toggle(m, button, detailRow) {
    const open = detailRow.hidden;
    detailRow.hidden = !open;
    button.setAttribute("aria-expanded", String(open));
    if (open) { expanded.add(m.ref); lineage(m, detailRow.firstChild); } else expanded.delete(m.ref);
  }

  async function refresh() {
    let data, loaded;
    try {
      [data, loaded] = await Promise.all([Console.json("/api/models"), Console.json("/api/ps")]);
    } catch (err) {
      status.textContent = String(err);
      return;
    }
    const ps = new Map(loaded.models.map((row) => [row.name, row]));
    const canWrite = Console.allows("models:write");
    $("models").replaceChildren(...data.models.flatMap((m) => {
      const id = "lineage-" + m.ref.replace(/[^a-zA-Z0-9_-]/g, "-");
      const detailRow = el("tr", { class: "lineage", id, "data-lineage": m.ref, hidden: "" }, [el("td", { colspan: "8" })]);
      const expand = el("button", { type: "button", class: "link expand", "aria-expanded": "false", "aria-controls": id, text: m.name });
      expand.addEventListener("click", () => toggle(m, expand, detailRow));
      const row = el("tr", { "data-model": m.ref }, [
        el("td", {}, [expand]),
        el("td", { text: String(m.version) }),
        el("td", { text: (m.aliases || []).join(", ") }),
        el("td", {}, [el("code", { text: (m.digest || "").replace("sha256:", "").slice(0, 12) })]),
        el("td", { text: Console.format.bytes(m.size_bytes) }),
        el("td", { text: m.format || m.kind }),
        el("td", { class: "state", text: stateText(ps.get(m.ref)) }),
        el("td", {}, [actions(m, ps.get(m.ref), canWrite)]),
      ]);
      if (expanded.has(m.ref)) toggle(m, expand, detailRow);
      return [row, detailRow];
    }));
  }
  // --- pull from the catalog --------------------------------------------------------------------
  let catalog = [];
  function describeEntry(entry) {
    const where = entry.pulled.length ? t("in_store") + ": " + entry.pulled.join(", ") + " · " + t("pull_again") : t("not_in_store");
    $("pull-about").textContent = [entry.kind, entry.license, entry.description].filter(Boolean).join(" · ") + " — " + where;
  }
  async function loadCatalog() {
    try {
      catalog = (await Console.json("/api/catalog")).models;
    } catch (err) {
      $("pull-error").textContent = String(err);
      return;
    }
    const select = $("pull-name");
    const chosen = select.value;
    select.replaceChildren(...catalog.map((entry) => el("option", {
      value: entry.name, text: entry.name + (entry.aliases.length ? " (" + entry.aliases.join(", ") + ")" : "") + (entry.pulled.length ? " ✓" : ""),
    })));
    if (chosen) select.value = chosen;
    const entry = catalog.find((e) => e.name === select.value);
    if (entry) describeEntry(entry);
    $("pull-go").disabled = !Console.allows("models:write");
  }
  function showProgress(line) {
    const bar = $("pull-bar");
    const total = line.total || 0;
    bar.max = total > 0 ? total : 1;
    bar.value = total > 0 ? Math.min(line.completed || 0, total) : 0;
    const amount = total > 0 ? Console.format.bytes(line.completed || 0) + " / " + Console.format.bytes(total) +
      " (" + Math.floor((100 * (line.completed || 0)) / total) + "%)" : Console.format.bytes(line.completed || 0);
    $("pull-text").textContent = t("pulling") + " " + (line.detail || "") + " · " + amount;
  }
  async function pull(name) {
    const button = $("pull-go");
    button.disabled = true;
    $("pull-error").textContent = "";
    $("pull-progress").hidden = false;
    $("pull-bar").value = 0;
    $("pull-text").textContent = t("pulling") + " " + name + "…";
    equivalent("pull", name);
    let outcome = null;
    try {
      const response = await Console.api("/api/pull", { method: "POST", json: { name, stream: true } });
      if (!response.ok) {
        const data = await response.json().catch(() => ({}));
        throw new Error(response.status + ": " + ((data.error && data.error.message) || response.statusText));
      }
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n")) >= 0) {
          const text = buffer.slice(0, cut).trim(); buffer = buffer.slice(cut + 1);
          if (!text) continue;
          const line = JSON.parse(text);
          if (line.status === "pulling") showProgress(line);
          else outcome = line;
        }
      }
      if (!outcome) throw new Error(t("pull") + " " + name + ": no result");
      if (outcome.status === "error") throw new Error((outcome.error && outcome.error.message) || JSON.stringify(outcome));
      const bar = $("pull-bar");
      bar.value = bar.max;
      $("pull-text").textContent = t("pulled") + " " + outcome.model + " " + (outcome.digest || "").replace("sha256:", "").slice(0, 12);
    } catch (err) {
      $("pull-error").textContent = String(err.message || err);
    } finally {
      button.disabled = !Console.allows("models:write");
    }
    await Promise.all([refresh(), loadCatalog()]);
  }
  $("pull-name").addEventListener("change", () => {
    const entry = catalog.find((e) => e.name === $("pull-name").value);
    if (entry) describeEntry(entry);
  });
  $("pull-form").addEventListener("submit", (event) => {
    event.preventDefault();
    if ($("pull-name").value) pull($("pull-name").value);
  });

  refresh();
  loadCatalog();
});
