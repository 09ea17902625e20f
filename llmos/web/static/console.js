// The console's shared code: the API key (sessionStorage), calls to the server's own HTTP API,
// the scopes of the key (GET /api/whoami) that decide which nav entries and pages show, and the
// phone-width nav toggle. Each page's script registers with Console.onReady(fn).
"use strict";
(function () {
  const KEY = "llmos.apiKey";
  const body = document.body;
  const strings = JSON.parse(body.dataset.strings || "{}");
  const readyFns = [];
  let who = null;

  function t(key) { return strings[key] || key; }
  function key() { return sessionStorage.getItem(KEY) || ""; }
  function headers(extra) {
    const h = Object.assign({}, extra || {});
    if (key()) h.Authorization = "Bearer " + key();
    return h;
  }
  async function api(path, options) {
    const opts = Object.assign({}, options || {});
    opts.headers = headers(opts.headers);
    if (opts.json !== undefined) {
      opts.body = JSON.stringify(opts.json);
      opts.headers["Content-Type"] = "application/json";
      delete opts.json;
    }
    return fetch(path, opts);
  }
  async function json(path, options) {
    const response = await api(path, options);
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      const message = (data.error && data.error.message) || response.statusText;
      const error = new Error(response.status + ": " + message);
      error.status = response.status;
      throw error;
    }
    return data;
  }
  function allows(scope) {
    if (!who) return false;
    if (scope === "any") return true;
    const scopes = who.scopes || [];
    return scopes.includes("admin") || scopes.includes(scope);
  }
  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (name === "text") node.textContent = value;
      else if (name === "class") node.className = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value);
    }
    for (const child of children || []) node.append(child);
    return node;
  }

  function showPrompt(message) {
    document.getElementById("key-prompt").hidden = false;
    document.getElementById("page-body").hidden = true;
    document.getElementById("key-error").textContent = message || "";
    document.getElementById("key-input").focus();
  }

  async function start() {
    let response;
    try {
      response = await api("/api/whoami");
    } catch (err) {
      showPrompt(String(err));
      return;
    }
    if (response.status === 401) {
      showPrompt(key() ? t("key_refused") : "");
      return;
    }
    who = await response.json();
    document.getElementById("key-prompt").hidden = true;
    document.getElementById("who").textContent = who.auth === "open" ? t("open_server") : (who.name || who.key_id);
    document.getElementById("forget-key").hidden = !key();
    for (const item of document.querySelectorAll("#nav li[data-scope]")) {
      item.hidden = !allows(item.dataset.scope);
    }
    if (!allows(body.dataset.scope)) {
      document.getElementById("page-body").hidden = true;
      document.getElementById("not-allowed").hidden = false;
      return;
    }
    document.getElementById("page-body").hidden = false;
    for (const fn of readyFns) fn();
  }

  document.getElementById("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, document.getElementById("key-input").value.trim());
    start();
  });
  document.getElementById("forget-key").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    location.reload();
  });
  const toggle = document.querySelector(".nav-toggle");
  toggle.addEventListener("click", () => {
    const open = toggle.getAttribute("aria-expanded") !== "true";
    toggle.setAttribute("aria-expanded", String(open));
    document.getElementById("nav").classList.toggle("open", open);
  });

  window.Console = {
    t, api, json, allows, el, headers,
    who: () => who,
    onReady: (fn) => readyFns.push(fn),
    format: {
      bytes(n) {
        if (n == null) return "–";
        const units = ["B", "KB", "MB", "GB", "TB"];
        let i = 0;
        while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
        return n.toFixed(i ? 1 : 0) + " " + units[i];
      },
    },
  };
  document.addEventListener("DOMContentLoaded", start);
})();
