// Keys and usage (admin scope): list / create / revoke keys (a new secret is shown once), usage
// totals by day, model or key from /api/usage (CSV too), and one request found by its id.
"use strict";
Console.onReady(() => {
  const { el, t } = Console;
  const $ = (id) => document.getElementById(id);

  async function keys() {
    const data = await Console.json("/api/keys?include_revoked=true");
    $("keys").replaceChildren(...data.keys.map((k) => el("tr", { "data-key": k.id }, [
      el("td", {}, [el("code", { text: k.id })]),
      el("td", { text: k.name }),
      el("td", { text: (k.scopes || []).join(", ") }),
      el("td", { text: (k.created_at || "").slice(0, 19).replace("T", " ") }),
      el("td", { text: k.revoked_at ? t("revoked") : t("active") }),
      el("td", {}, k.revoked_at ? [] : [el("button", { type: "button", text: t("revoke"), onclick: () => revoke(k.id) })]),
    ])));
  }
  async function revoke(id) {
    if (!confirm(t("revoke") + " " + id + "?")) return;
    await Console.json("/api/keys/" + encodeURIComponent(id) + "/revoke", { method: "POST" });
    keys();
  }
  function usageQuery(format) {
    const q = new URLSearchParams({ by: $("usage-by").value, format });
    if ($("usage-since").value) q.set("since", $("usage-since").value);
    return "/api/usage?" + q;
  }
  async function usage() {
    const data = await Console.json(usageQuery("json"));
    const rows = data.data || [];
    const columns = rows.length ? Object.keys(rows[0]) : [data.by];
    $("usage-head").replaceChildren(...columns.map((c) => el("th", { text: c })));
    $("usage").replaceChildren(...rows.map((r) => el("tr", {}, columns.map((c) => el("td", { text: String(r[c] ?? "") })))));
  }
  $("create-key").addEventListener("submit", async (event) => {
    event.preventDefault();
    const scopes = $("key-scopes").value.split(",").map((s) => s.trim()).filter(Boolean);
    try {
      const key = await Console.json("/api/keys", { method: "POST", json: { name: $("key-name").value, scopes } });
      $("new-secret").hidden = false;
      $("new-secret").textContent = t("secret_once") + " " + key.key;
      keys();
    } catch (err) {
      $("new-secret").hidden = false;
      $("new-secret").textContent = String(err);
    }
  });
  $("usage-form").addEventListener("submit", (event) => { event.preventDefault(); usage(); });
  $("usage-csv").addEventListener("click", async () => {
    // A plain link cannot send the key, so fetch the CSV and hand the browser a blob to save.
    const response = await Console.api(usageQuery("csv"));
    const link = el("a", { href: URL.createObjectURL(await response.blob()), download: "llmos-usage.csv" });
    link.click();
    URL.revokeObjectURL(link.href);
  });
  $("find-request").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const data = await Console.json("/api/usage/records?request_id=" + encodeURIComponent($("request-id").value.trim()));
      $("request-found").textContent = data.data.length ? JSON.stringify(data.data, null, 2) : t("not_found");
    } catch (err) {
      $("request-found").textContent = String(err);
    }
  });
  keys().catch((err) => { $("keys").replaceChildren(el("tr", {}, [el("td", { colspan: "6", text: String(err) })])); });
  usage().catch(() => {});
});
