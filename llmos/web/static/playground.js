// Playground: chat (/v1/chat/completions) or completion (/v1/completions) with stream: true. The
// SSE body is read as it arrives and each token is appended to the answer; with "logprobs" on,
// each token is its own span whose title lists the top 5 alternatives (shown on hover / focus).
// "Structured output" sends vLLM's structured_outputs (a JSON schema, a regex or a list of choices),
// which the server enforces token by token; a JSON answer is then checked in the page.
"use strict";
Console.onReady(() => {
  const { el, t } = Console;
  const $ = (id) => document.getElementById(id);
  const history = [];
  let controller = null;

  async function models() {
    try {
      const data = await Console.json("/v1/models");
      for (const id of ["model", "model-b"]) $(id).replaceChildren(...data.data.map((m) => el("option", { value: m.id, text: m.id })));
    } catch (err) {
      $("play-status").textContent = String(err);
    }
  }
  function mode() { return document.querySelector("input[name=mode]:checked").value; }
  function number(id) { const v = $(id).value; return v === "" ? undefined : Number(v); }

  function request(prompt) {
    const body = {
      model: $("model").value, stream: true,
      temperature: number("temperature"), top_p: number("top_p"),
      max_tokens: number("max_tokens"), seed: number("seed"),
    };
    const stop = $("stop").value.split(",").map((s) => s.trim()).filter(Boolean);
    if (stop.length) body.stop = stop;
    const structured = structuredOutputs();
    if (structured) body.structured_outputs = structured;
    const withLogprobs = $("logprobs").checked;
    if (mode() === "chat") {
      body.messages = history.concat([{ role: "user", content: prompt }]);
      if (withLogprobs) { body.logprobs = true; body.top_logprobs = 5; }
      return ["/v1/chat/completions", body];
    }
    body.prompt = prompt;
    if (withLogprobs) body.logprobs = 5;
    return ["/v1/completions", body];
  }

  const PLACEHOLDERS = {
    json: '{"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}',
    regex: "[0-9]{3}-[0-9]{4}",
    choice: "yes, no",
  };
  function structuredOutputs() {
    const kind = $("structured").value;
    if (!kind) return null;
    const spec = $("structured-spec").value.trim();
    if (!spec) throw new Error(t("structured_empty"));
    if (kind === "json") {
      try { return { json: JSON.parse(spec) }; } catch (err) { throw new Error(t("structured_bad_json") + " " + err.message); }
    }
    if (kind === "choice") return { choice: spec.split(/[,\n]/).map((c) => c.trim()).filter(Boolean) };
    return { regex: spec };
  }
  $("compare").addEventListener("change", () => { $("model-b").hidden = !$("compare").checked; });
  $("structured").addEventListener("change", () => {
    const kind = $("structured").value;
    $("structured-spec").hidden = !kind;
    $("structured-spec").placeholder = PLACEHOLDERS[kind] || "";
  });

  // [{token, logprob, top: [[token, logprob], ...]}] of one chunk's choice, chat or completion.
  function tokenLogprobs(choice) {
    const lp = choice.logprobs;
    if (!lp) return null;
    if (lp.content) return lp.content.map((c) => ({ token: c.token, logprob: c.logprob, top: (c.top_logprobs || []).map((x) => [x.token, x.logprob]) }));
    if (lp.tokens) return lp.tokens.map((token, i) => ({ token, logprob: lp.token_logprobs[i], top: Object.entries((lp.top_logprobs || [])[i] || {}) }));
    return null;
  }
  function append(answer, text, logprobs) {
    if (!logprobs) { answer.append(document.createTextNode(text)); return; }
    // One span per chunk with the chunk's text (the token strings may lack its leading space).
    const title = logprobs.map((tok) => JSON.stringify(tok.token) + " logprob " + tok.logprob.toFixed(3) + "\n" +
      tok.top.map(([s, p]) => "  " + JSON.stringify(s) + " " + p.toFixed(3)).join("\n")).join("\n");
    answer.append(el("span", { class: "token", tabindex: "0", title, text }));
  }

  // Stream one request's answer into the element `answer`; resolves to the whole text.
  async function streamInto(path, body, answer, signal) {
    let text = "";
    try {
      const response = await Console.api(path, { method: "POST", json: body, signal });
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
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const event = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
          for (const line of event.split("\n")) {
            if (!line.startsWith("data:")) continue;
            const data = line.slice(5).trim();
            if (data === "[DONE]") continue;
            const chunk = JSON.parse(data);
            if (chunk.error) throw new Error(chunk.error.message);
            for (const choice of chunk.choices || []) {
              const piece = choice.delta ? (choice.delta.content || "") : (choice.text || "");
              if (!piece) continue;
              text += piece;
              append(answer, piece, tokenLogprobs(choice));
            }
          }
        }
      }
    } finally {
      answer.dataset.state = "done";
    }
    return text;
  }

  function turn(prompt) {
    $("transcript").append(el("li", { class: "user" }, [el("span", { class: "who", text: t("you") }), el("p", { text: prompt })]));
  }
  function busy(on) {
    $("send").disabled = on; $("stop-button").disabled = !on;
    $("play-status").textContent = on ? t("generating") : "";
    controller = on ? new AbortController() : null;
  }
  function failed(err) {
    $("play-status").textContent = err.name === "AbortError" ? t("stopped") : String(err);
  }

  async function send(prompt) {
    let path, body;
    try {
      [path, body] = request(prompt);
    } catch (err) {
      $("play-status").textContent = String(err);
      return false;
    }
    if ($("compare").checked) return sendSideBySide(prompt, path, body);
    turn(prompt);
    const answer = el("p", { class: "answer", "data-state": "streaming" });
    $("transcript").append(el("li", { class: "assistant" }, [el("span", { class: "who", text: body.model }), answer]));
    busy(true);
    let text = "";
    try {
      text = await streamInto(path, body, answer, controller.signal);
      $("play-status").textContent = "";
      if (body.structured_outputs && body.structured_outputs.json) {
        let valid = true;
        try { JSON.parse(text); } catch (err) { valid = false; }
        $("play-status").textContent = valid ? t("structured_valid_json") : t("structured_invalid_json");
      }
    } catch (err) {
      failed(err);
    } finally {
      $("send").disabled = false; $("stop-button").disabled = true;
      controller = null;
    }
    if (mode() === "chat") history.push({ role: "user", content: prompt }, { role: "assistant", content: text });
    return true;
  }

  // Side by side: the same request to two models at once (one turn each, no history), then a vote
  // that POST /api/evaluations/votes stores as an evaluation result of each model.
  async function sendSideBySide(prompt, path, body) {
    const models = [$("model").value, $("model-b").value];
    turn(prompt);
    const answers = models.map(() => el("p", { class: "answer", "data-state": "streaming" }));
    const columns = models.map((m, i) => el("div", { class: "side" }, [el("span", { class: "who", text: (i ? "B · " : "A · ") + m }), answers[i]]));
    const votes = el("div", { class: "row vote", hidden: "" });
    $("transcript").append(el("li", { class: "assistant pair" }, [el("div", { class: "sides" }, columns), votes]));
    busy(true);
    try {
      const messages = [{ role: "user", content: prompt }];
      await Promise.all(models.map((model, i) => {
        const one = { ...body, model };
        if (one.messages) one.messages = messages;
        return streamInto(path, one, answers[i], controller.signal);
      }));
      $("play-status").textContent = "";
      for (const [winner, label] of [["a", t("vote_a")], ["tie", t("vote_tie")], ["b", t("vote_b")]]) {
        const button = el("button", { type: "button", "data-vote": winner, text: label });
        button.addEventListener("click", () => vote(votes, models, winner, prompt));
        votes.append(button);
      }
      votes.hidden = false;
    } catch (err) {
      failed(err);
    } finally {
      $("send").disabled = false; $("stop-button").disabled = true;
      controller = null;
    }
    return true;
  }

  async function vote(votes, models, winner, prompt) {
    for (const button of votes.querySelectorAll("button")) button.disabled = true;
    try {
      const stored = await Console.json("/api/evaluations/votes", { method: "POST", json: { a: models[0], b: models[1], winner, prompt } });
      const [a, b] = stored.results;
      votes.append(el("span", { class: "muted", "data-state": "voted", text: t("vote_stored") + " " +
        a.model_ref + " " + Math.round(a.metrics.win_rate * 100) + "% · " + b.model_ref + " " + Math.round(b.metrics.win_rate * 100) + "%" }));
    } catch (err) {
      for (const button of votes.querySelectorAll("button")) button.disabled = false;
      $("play-status").textContent = String(err);
    }
  }

  $("play-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const prompt = $("prompt").value;
    if (!prompt.trim()) return;
    send(prompt).then((sent) => { if (sent) $("prompt").value = ""; });
  });
  $("prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) $("play-form").requestSubmit();
  });
  $("stop-button").addEventListener("click", () => controller && controller.abort());
  $("clear").addEventListener("click", () => { history.length = 0; $("transcript").replaceChildren(); });
  models();
});
