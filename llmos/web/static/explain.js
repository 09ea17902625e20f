// Explain: POST /api/explain drawn in the page. Attributions colour each prompt token by its score
// (red for, blue against; the value on hover) with a target-token × prompt-token grid; attention
// draws a query × key grid for the picked layer and head (changing either runs again); the logit
// lens draws layers × positions with each cell's top token, coloured by its probability.
// ?model=&method=&prompt=&target= fill the form. Colours are set through the CSSOM (el.style),
// which the strict CSP allows (it refuses a style="" attribute); colours scale to the largest value.
"use strict";
Console.onReady(() => {
  const { el, t } = Console;
  const $ = (id) => document.getElementById(id);
  const form = $("explain-form");
  const ATTRIBUTION = new Set(["integrated-gradients", "saliency", "input-x-gradient", "ablation"]);

  function kind(method) { return ATTRIBUTION.has(method) ? "attribution" : method; }
  function showFields() {
    const current = kind($("explain-method").value);
    for (const node of form.querySelectorAll("[data-for]")) node.hidden = node.dataset.for !== current;
  }
  function number(id) {
    const value = $(id).value.trim();
    return value === "" ? null : Number(value);
  }
  function body() {
    const method = $("explain-method").value;
    const request = { model: $("explain-model").value.trim(), prompt: $("explain-prompt").value, method };
    if (kind(method) === "attribution") {
      if ($("explain-target").value) request.target = $("explain-target").value;
      request.steps = number("explain-steps") ?? 32;
    } else if (method === "attention") {
      if (number("explain-layer") !== null) request.layer = number("explain-layer");
      if (number("explain-head") !== null) request.head = number("explain-head");
    } else {
      request.top_k = number("explain-top-k") ?? 5;
    }
    return request;
  }

  function quote(s) { return "'" + String(s).replace(/'/g, "'\\''") + "'"; }
  function equivalent(request) {
    const flags = { target: "--target", steps: "--steps", layer: "--layer", head: "--head", top_k: "--top-k" };
    let cli = "llmos explain " + quote(request.model) + " " + quote(request.prompt) + " --method " + request.method;
    for (const [name, flag] of Object.entries(flags)) {
      if (request[name] !== undefined) cli += " " + flag + " " + (name === "target" ? quote(request.target) : request[name]);
    }
    $("explain-cli").textContent = cli + " --json";
    const auth = Console.who().auth === "key" ? ' -H "Authorization: Bearer $LLMOS_API_KEY"' : "";
    $("explain-curl").textContent = "curl -X POST" + auth + ' -H "Content-Type: application/json" ' +
      location.origin + "/api/explain -d " + quote(JSON.stringify(request));
  }

  // white → red for a positive weight, white → blue for a negative one; |weight| ≤ 1
  function colour(weight) {
    const w = Math.min(Math.abs(weight), 1);
    const [r, g, b] = weight >= 0 ? [185, 28, 28] : [29, 78, 216];
    const mix = (c) => Math.round(255 + (c - 255) * w);
    return "rgb(" + mix(r) + "," + mix(g) + "," + mix(b) + ")";
  }
  function paint(node, weight) {
    node.style.backgroundColor = colour(weight);
    if (Math.abs(weight) > 0.55) node.classList.add("dark"); // white text on the darkest cells
    return node;
  }
  function peak(values) { return Math.max(1e-12, ...values.map(Math.abs)); }
  function shown(token) { return JSON.stringify(token); }

  function drawTokens(e, top) {
    $("explain-tokens").replaceChildren(...e.input_tokens.map((token, i) => paint(
      el("span", { class: "tok", tabindex: "0", "data-score": String(e.scores[i]), title: shown(token) + ": " + e.scores[i].toFixed(4), text: token }),
      e.scores[i] / top,
    )));
    if (e.target_tokens.length) $("explain-tokens").append(el("span", { class: "target", text: " → " + e.target_tokens.join("") }));
  }
  function header(e) {
    return el("tr", {}, [el("th", {}), ...e.input_tokens.map((token) => el("th", { title: shown(token), text: token }))]);
  }
  function drawMatrix(e) {
    const top = peak(e.token_scores.flat());
    $("explain-grid").replaceChildren(header(e), ...e.token_scores.map((row, r) => el("tr", {}, [
      el("th", { title: shown(e.row_labels[r]), text: e.row_labels[r] }),
      ...row.map((value, c) => paint(el("td", {
        title: shown(e.row_labels[r]) + " · " + shown(e.input_tokens[c]) + ": " + value.toFixed(4),
        text: value.toFixed(2),
      }), value / top)),
    ])));
  }
  function drawLens(e) {
    const most = peak(e.token_scores.flat());
    $("explain-grid").replaceChildren(header(e), ...e.logit_lens.map((layer, r) => el("tr", { "data-layer": String(r) }, [
      el("th", { text: e.row_labels[r] }),
      ...layer.map((top) => paint(el("td", {
        "data-prob": String(top[0].prob),
        title: top.map((entry) => shown(entry.token) + " " + entry.prob.toFixed(3)).join("\n"),
      }, [el("span", { class: "top", text: top[0].token }), el("small", { text: top[0].prob.toFixed(2) })]), top[0].prob / most)),
    ])));
  }

  function draw(e) {
    const signed = ATTRIBUTION.has(e.method);
    let meta = "· " + e.model + " · " + e.method;
    if (e.convergence_delta != null) meta += " · " + t("explain_delta") + " " + e.convergence_delta.toFixed(4);
    if (e.method === "attention") meta += " · " + t("explain_layer") + " " + e.layer + " · " + t("explain_head") + " " + (e.head ?? t("explain_mean"));
    $("explain-meta").textContent = meta;
    $("explain-result").dataset.method = e.method;
    // the tokens share the grid's scale where they are one of its rows (attention, logit lens); an
    // attribution's scores are its rows summed, so they have their own; the legend names it
    const most = signed ? peak(e.scores) : peak(e.token_scores.flat());
    $("explain-legend").textContent = t(signed ? "explain_legend_attribution" : "explain_legend_" + e.method.replace("-", "_")) +
      " " + t("explain_darkest") + " " + (signed ? "±" : "") + most.toPrecision(3) + ".";
    $("explain-grid-title").textContent = t("explain_grid_" + (signed ? "attribution" : e.method.replace("-", "_")));
    drawTokens(e, most);
    if (e.method === "logit-lens") drawLens(e); else drawMatrix(e);
    $("explain-json").textContent = JSON.stringify(e, null, 2);
    $("explain-result").hidden = false;
  }

  async function run() {
    const request = body();
    equivalent(request);
    const q = new URLSearchParams({ model: request.model, method: request.method, prompt: request.prompt });
    if (request.target) q.set("target", request.target);
    history.replaceState(null, "", "?" + q);
    $("explain-run").disabled = true;
    $("explain-error").textContent = "";
    $("explain-status").textContent = t("running_task");
    try {
      draw(await Console.json("/api/explain", { method: "POST", json: request }));
      $("explain-status").textContent = "";
    } catch (err) {
      $("explain-result").hidden = true;
      $("explain-status").textContent = "";
      $("explain-error").textContent = String(err.message || err);
    } finally {
      $("explain-run").disabled = false;
    }
  }

  async function models() {
    if (!Console.allows("models:read")) return; // an eval-only key types the model's name
    const data = await Console.json("/api/models").catch(() => ({ models: [] }));
    $("explain-models").replaceChildren(...data.models.map((m) => el("option", { value: m.ref })));
    if (!$("explain-model").value && data.models.length) {
      $("explain-model").value = (data.models.find((m) => m.loaded) || data.models[0]).ref;
    }
  }

  // The layer and head pickers' ranges from the model's shape (GET /api/models/{ref}: layers,
  // heads); negative layers count from the last, as the API takes them.
  let shapeOf = "";
  async function shape() {
    const ref = $("explain-model").value.trim();
    if (!ref || ref === shapeOf || !Console.allows("models:read")) return;
    shapeOf = ref;
    const info = await Console.json("/api/models/" + encodeURIComponent(ref)).catch(() => null);
    const facts = (info && info.shape) || {};
    const layer = $("explain-layer"), head = $("explain-head");
    if (facts.layers) {
      layer.min = String(-facts.layers); layer.max = String(facts.layers - 1);
      layer.placeholder = t("explain_last") + " (0–" + (facts.layers - 1) + ")";
    } else { layer.removeAttribute("max"); layer.min = "0"; layer.placeholder = t("explain_last"); }
    if (facts.heads) {
      head.max = String(facts.heads - 1);
      head.placeholder = t("explain_mean") + " (0–" + (facts.heads - 1) + ")";
    } else { head.removeAttribute("max"); head.placeholder = t("explain_mean"); }
    $("explain-shape").textContent = facts.layers ? facts.layers + " " + t("explain_layers") + " · " + facts.heads + " " + t("explain_heads") : "";
  }

  const params = new URLSearchParams(location.search);
  for (const [name, id] of [["model", "explain-model"], ["method", "explain-method"], ["prompt", "explain-prompt"], ["target", "explain-target"]]) {
    if (params.has(name)) $(id).value = params.get(name);
  }
  $("explain-method").addEventListener("change", () => { showFields(); equivalent(body()); });
  for (const id of ["explain-layer", "explain-head"]) {
    $(id).addEventListener("change", () => { if (!$("explain-result").hidden && $("explain-method").value === "attention") run(); });
  }
  form.addEventListener("submit", (event) => { event.preventDefault(); run(); });
  form.addEventListener("input", () => equivalent(body())); // the commands follow the form as it is typed
  $("explain-model").addEventListener("change", () => shape());
  showFields();
  models().then(() => { equivalent(body()); return shape(); });
});
