// Models: the registry (GET /api/models) with load / unload through the same API, and for each
// action the equivalent CLI, Python SDK and curl.
"use strict";
Console.onReady(() => {
  const { el, t } = Console;
  const status = document.getElementById("models-status");
  const origin = location.origin;

  function equivalent(action, ref) {
    const auth = Console.who().auth === "key" ? ' -H "Authorization: Bearer $LLMOS_API_KEY"' : "";
    document.getElementById("equivalent").hidden = false;
    document.getElementById("equivalent-action").textContent = "· " + action + " " + ref;
    document.getElementById("eq-cli").textContent = action === "load"
      ? "# " + t("no_load_command") + "\nllmos run " + ref + ' "hello" --url ' + origin
      : "llmos stop " + ref + " --url " + origin;
    document.getElementById("eq-sdk").textContent =
      'import llmos\nserver = llmos.connect("' + origin + '")\nserver.' + action + '("' + ref + '")';
    document.getElementById("eq-curl").textContent =
      "curl -X POST" + auth + " " + origin + "/api/models/" + ref + "/" + action;
  }
  async function act(action, ref, button) {
    button.disabled = true;
    status.textContent = t(action === "load" ? "loading" : "unloading") + " " + ref + "…";
    equivalent(action, ref);
    try {
      await Console.json("/api/models/" + encodeURIComponent(ref) + "/" + action, { method: "POST" });
      status.textContent = t(action === "load" ? "loaded" : "unloaded") + " " + ref;
    } catch (err) {
      status.textContent = String(err);
    }
    await refresh();
  }
  async function refresh() {
    let data;
    try {
      data = await Console.json("/api/models");
    } catch (err) {
      status.textContent = String(err);
      return;
    }
    const canWrite = Console.allows("models:write");
    document.getElementById("models").replaceChildren(...data.models.map((m) => {
      const action = m.loaded ? "unload" : "load";
      const button = el("button", { type: "button", "data-action": action, "data-model": m.ref, text: t(action) });
      button.disabled = !canWrite;
      button.addEventListener("click", () => act(action, m.ref, button));
      return el("tr", { "data-model": m.ref }, [
        el("td", { text: m.name }),
        el("td", { text: String(m.version) }),
        el("td", { text: (m.aliases || []).join(", ") }),
        el("td", {}, [el("code", { text: (m.digest || "").replace("sha256:", "").slice(0, 12) })]),
        el("td", { text: Console.format.bytes(m.size_bytes) }),
        el("td", { text: m.format || m.kind }),
        el("td", { class: "state", text: m.loaded ? t("loaded") : "–" }),
        el("td", {}, [button]),
      ]);
    }));
  }
  refresh();
});
