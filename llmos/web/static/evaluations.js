// Evaluations: the stored results of GET /api/evaluations grouped by model version, one version's
// results, and two versions side by side with the deltas of GET /api/evaluations/compare (b - a,
// as `llmos eval compare A B` prints them), and one result's examples — input, prediction, reference
// and score, paged and ordered on the server (GET /api/evaluations/{id}/examples). ?model=REF shows
// a version, &a=REF&b=REF a comparison, &result=ID its examples.
"use strict";
Console.onReady(() => {
  const { el, t } = Console;
  const $ = (id) => document.getElementById(id);
  let byRef = new Map();

  function when(iso) { return (iso || "").slice(0, 19).replace("T", " "); }
  function number(v) {
    if (v == null) return "–";
    return Math.abs(v) >= 1000 || Number.isInteger(v) ? String(v) : v.toFixed(4);
  }
  // Metrics where a smaller number is the better model: their deltas are coloured the other way.
  const LOWER_IS_BETTER = /perplexity|loss|error|^ter$|latency|seconds/i;
  function verdict(metric, delta) {
    if (!delta) return "";
    return (delta > 0) !== LOWER_IS_BETTER.test(metric) ? " better" : " worse";
  }
  function metricsText(metrics) {
    return Object.entries(metrics).map(([k, v]) => k + " " + (typeof v === "number" ? number(v) : JSON.stringify(v))).join(" · ");
  }
  function query(values) {
    const q = new URLSearchParams(location.search);
    for (const [k, v] of Object.entries(values)) if (v) q.set(k, v); else q.delete(k);
    history.replaceState(null, "", "?" + q);
  }

  function showVersion(ref) {
    const results = byRef.get(ref) || [];
    $("version").hidden = false;
    $("version-ref").textContent = ref;
    $("version-results").replaceChildren(...results.map((r) => el("tr", { "data-task": r.task }, [
      el("td", { text: r.suite }),
      el("td", { text: r.task }),
      el("td", { text: metricsText(r.metrics) }),
      el("td", { class: "num" }, r.num_examples_stored ? [el("button", {
        type: "button", "data-examples": String(r.id), text: t("show_examples") + " (" + r.num_examples_stored + ")",
        onclick: () => { examples.id = r.id; examples.offset = 0; showExamples(); },
      })] : [el("span", { class: "muted", text: "–" })]),
      el("td", {}, [el("code", { text: (r.model_digest || "").replace("sha256:", "").slice(0, 12) })]),
      el("td", { text: when(r.created_at) }),
    ])));
    $("version-cli").textContent = "llmos eval results " + ref;
    query({ model: ref });
  }

  const EXAMPLES_PAGE = 20;
  const examples = { id: null, offset: 0, total: 0 };
  function shown(value) {
    if (value == null) return "";
    return typeof value === "string" ? value : JSON.stringify(value);
  }
  async function showExamples() {
    const order = $("examples-order").value;
    const q = new URLSearchParams({ offset: examples.offset, limit: EXAMPLES_PAGE, order });
    try {
      const data = await Console.json("/api/evaluations/" + examples.id + "/examples?" + q);
      examples.total = data.total;
      const r = data.result;
      $("examples").hidden = false;
      $("examples-of").textContent = r.model_ref + " · " + r.suite + "/" + r.task;
      $("examples-rows").replaceChildren(...data.examples.map((e) => el("tr", {
        "data-position": String(e.position),
        class: e.score == null ? "" : e.score >= 1 ? "right" : e.score <= 0 ? "wrong" : "partly",
      }, [
        el("td", { class: "num", text: String(e.position + 1) }),
        el("td", { class: "num", text: e.score == null ? "–" : e.score.toFixed(3) }),
        el("td", { class: "text", text: shown(e.input) }),
        el("td", { class: "text prediction", text: shown(e.prediction) }),
        el("td", { class: "text reference", text: shown(e.reference) }),
      ])));
      const first = data.examples.length ? examples.offset + 1 : 0;
      $("examples-status").textContent = first + "–" + (examples.offset + data.examples.length) + " " + t("of") + " " + data.total;
      $("examples-prev").disabled = examples.offset === 0;
      $("examples-next").disabled = examples.offset + EXAMPLES_PAGE >= data.total;
      $("examples-cli").textContent = "llmos eval examples " + examples.id + (order === "position" ? "" : " --order " + order) +
        (examples.offset ? " --offset " + examples.offset : "");
      query({ result: String(examples.id) });
    } catch (err) {
      $("examples-status").textContent = String(err.message || err);
    }
  }
  function moveExamples(delta) {
    examples.offset = Math.max(0, examples.offset + delta);
    showExamples();
  }
  $("examples-order").addEventListener("change", () => { examples.offset = 0; showExamples(); });
  $("examples-prev").addEventListener("click", () => moveExamples(-EXAMPLES_PAGE));
  $("examples-next").addEventListener("click", () => moveExamples(EXAMPLES_PAGE));

  async function runCompare() {
    const a = $("eval-a").value, b = $("eval-b").value;
    $("compare-cli").textContent = "llmos eval compare " + a + " " + b;
    try {
      const q = new URLSearchParams({ a, b });
      const data = await Console.json("/api/evaluations/compare?" + q);
      $("compare-a-head").textContent = "A · " + data.a;
      $("compare-b-head").textContent = "B · " + data.b;
      $("compare-rows").replaceChildren(...data.rows.map((r) => el("tr", { "data-metric": r.task + "/" + r.metric }, [
        el("td", { text: r.suite }),
        el("td", { text: r.task }),
        el("td", { text: r.metric }),
        el("td", { class: "num a", text: number(r.a) }),
        el("td", { class: "num b", text: number(r.b) }),
        el("td", {
          class: "num delta" + verdict(r.metric, r.delta),
          text: r.delta == null ? "–" : (r.delta > 0 ? "+" : "") + number(r.delta),
        }),
      ])));
      $("compare-table").hidden = false;
      $("compare-status").textContent = "";
      query({ a, b });
    } catch (err) {
      $("compare-table").hidden = true;
      $("compare-status").textContent = String(err.message || err);
    }
  }

  async function start() {
    const data = await Console.json("/api/evaluations");
    byRef = new Map();
    for (const r of data.results) byRef.set(r.model_ref, (byRef.get(r.model_ref) || []).concat([r]));
    $("eval-status").textContent = byRef.size ? "" : t("no_evaluations");
    $("eval-models").replaceChildren(...[...byRef.entries()].map(([ref, results]) => {
      const link = el("a", { href: "?model=" + encodeURIComponent(ref), text: ref });
      link.addEventListener("click", (event) => { event.preventDefault(); showVersion(ref); });
      return el("tr", { "data-model": ref }, [
        el("td", {}, [link]),
        el("td", { class: "num", text: String(results.length) }),
        el("td", { text: [...new Set(results.map((r) => r.task))].join(", ") }),
        el("td", { text: when(results[results.length - 1].created_at) }),
      ]);
    }));
    const refs = [...byRef.keys()];
    for (const id of ["eval-a", "eval-b"]) $(id).replaceChildren(...refs.map((ref) => el("option", { value: ref, text: ref })));
    const wanted = new URLSearchParams(location.search);
    $("eval-a").value = wanted.get("a") || refs[0] || "";
    $("eval-b").value = wanted.get("b") || refs[1] || refs[0] || "";
    $("compare-cli").textContent = refs.length ? "llmos eval compare " + $("eval-a").value + " " + $("eval-b").value : "";
    if (wanted.get("model") && byRef.has(wanted.get("model"))) showVersion(wanted.get("model"));
    if (wanted.get("a") && wanted.get("b")) runCompare();
    if (/^\d+$/.test(wanted.get("result") || "")) { examples.id = Number(wanted.get("result")); showExamples(); }
  }

  $("compare-form").addEventListener("submit", (event) => { event.preventDefault(); runCompare(); });
  start().catch((err) => { $("eval-status").textContent = String(err.message || err); });
});
