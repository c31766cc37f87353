// The chat page: one conversation id per chat, answers streamed over SSE from POST /v1/requests.
"use strict";

const $ = (id) => document.getElementById(id);
let businesses = {};
let conversationId = null;
let current = null; // {requestId, controller}
const totals = {}; // currency -> amount

function newConversation() {
  conversationId = crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random().toString(16).slice(2);
  $("conversation").textContent = conversationId;
  $("turns").replaceChildren();
  for (const key of Object.keys(totals)) delete totals[key];
  renderTotal();
}

function renderTotal() {
  const parts = Object.entries(totals).map(([currency, amount]) => `${amount.toFixed(8)} ${currency}`);
  $("total-cost").textContent = parts.length ? parts.join(" + ") : "0";
}

function showBusiness() {
  const business = businesses[$("business").value];
  $("model").replaceChildren(...business.models.map((m) => new Option(m, m, m === business.default_model, m === business.default_model)));
  $("variables").replaceChildren(...business.variables.map((name) => {
    const label = document.createElement("label");
    label.textContent = name;
    const input = document.createElement("input");
    input.name = name;
    input.dataset.variable = name;
    label.append(input);
    return label;
  }));
  newConversation();
}

function bubble(kind, text) {
  const div = document.createElement("div");
  div.className = `bubble ${kind}`;
  if (text !== undefined) div.textContent = text;
  $("turns").append(div);
  div.scrollIntoView({block: "end"});
  return div;
}

function part(parent, className, text) {
  const el = document.createElement("div");
  el.className = className;
  if (text !== undefined) el.textContent = text;
  parent.append(el);
  return el;
}

function addCost(usage) {
  const cost = {};
  for (const step of usage || []) {
    const amount = Number(step.input_cost) + Number(step.output_cost);
    cost[step.currency] = (cost[step.currency] || 0) + amount;
    totals[step.currency] = (totals[step.currency] || 0) + amount;
  }
  renderTotal();
  return Object.entries(cost).map(([c, a]) => `${a.toFixed(8)} ${c}`).join(" + ") || "0";
}

function describeUsage(usage) {
  const input = (usage || []).reduce((n, u) => n + u.input_tokens, 0);
  const output = (usage || []).reduce((n, u) => n + u.output_tokens, 0);
  return `tokens: ${input} in, ${output} out · cost: ${addCost(usage)}`;
}

async function showTrace(turn, requestId) {
  const details = document.createElement("details");
  details.className = "trace";
  const summary = document.createElement("summary");
  summary.textContent = "trace";
  const pre = document.createElement("pre");
  details.append(summary, pre);
  turn.append(details);
  for (let attempt = 0; attempt < 20; attempt++) {
    const response = await fetch(`/v1/requests/${requestId}/trace`);
    if (response.ok) {
      const body = await response.json();
      pre.textContent = body.tree;
      details.open = true;
      turn.dataset.trace = "shown";
      return;
    }
    const body = await response.json().catch(() => ({}));
    if (body.error && body.error.code === "no_traces") {
      pre.textContent = body.error.message;
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  pre.textContent = "no spans for this request";
}

function showAnswer(turn, answer) {
  turn.dataset.answerType = answer.type;
  if (answer.type === "response") {
    turn.dataset.state = "done";
    part(turn, "output", JSON.stringify(answer.output, null, 2));
    const moderation = (answer.moderation || []).map((m) => `${m.stage}: ${m.action}`).join(", ") || "none";
    part(turn, "meta moderation", `moderation: ${moderation}`);
    part(turn, "meta usage", describeUsage(answer.usage));
  } else if (answer.type === "blocked") {
    turn.dataset.state = "blocked";
    turn.classList.add("blocked");
    part(turn, "output", `Blocked by moderation on the ${answer.stage} (${answer.categories.join(", ")}).`);
    part(turn, "meta moderation", `moderation: ${answer.stage}: block`);
  } else if (answer.type === "cancelled") {
    turn.dataset.state = "cancelled";
    turn.classList.add("cancelled");
    part(turn, "output", `Cancelled (${answer.reason}).`);
    part(turn, "meta usage", describeUsage(answer.usage));
  } else {
    turn.dataset.state = "error";
    turn.classList.add("error");
    part(turn, "output", `${answer.message} [${answer.code}]`);
  }
  showTrace(turn, answer.request_id);
}

function showProblem(turn, body, status) {
  turn.dataset.state = "error";
  turn.classList.add("error");
  const error = (body && body.error) || {code: "http_error", message: `HTTP ${status}`};
  part(turn, "output", `${error.message} [${error.code}]`);
}

function* sseEvents(buffer) {
  let index;
  while ((index = buffer.text.indexOf("\n\n")) >= 0) {
    const block = buffer.text.slice(0, index);
    buffer.text = buffer.text.slice(index + 2);
    let event = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith("event: ")) event = line.slice(7);
      else if (line.startsWith("data: ")) data.push(line.slice(6));
    }
    if (data.length) yield {event, data: JSON.parse(data.join("\n"))};
  }
}

async function send(text) {
  const vars = {};
  for (const input of document.querySelectorAll("[data-variable]")) if (input.value) vars[input.dataset.variable] = input.value;
  bubble("user", text);
  const turn = bubble("assistant");
  turn.dataset.state = "streaming";
  turn.dataset.deltasBeforeAnswer = "0";
  const stream = part(turn, "stream");
  const progress = part(turn, "progress");
  const controller = new AbortController();
  current = {requestId: null, controller};
  $("cancel").disabled = false;
  $("send").disabled = true;
  try {
    const response = await fetch("/v1/requests", {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({business: $("business").value, model: $("model").value, input: text, vars, conversation_id: conversationId, stream: true}),
      signal: controller.signal,
    });
    if (!response.ok) {
      showProblem(turn, await response.json().catch(() => null), response.status);
      return;
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    const buffer = {text: ""};
    let deltas = 0;
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buffer.text += decoder.decode(value, {stream: true});
      for (const {event, data} of sseEvents(buffer)) {
        if (event === "request") {
          current.requestId = data.request_id;
          turn.dataset.requestId = data.request_id;
        } else if (event === "delta") {
          deltas += 1;
          turn.dataset.deltasBeforeAnswer = String(deltas);
          stream.textContent += data.text;
        } else if (event === "progress") {
          progress.textContent = `${data.agent} finished ${data.step}`;
        } else if (event === "answer") {
          showAnswer(turn, data);
        } else if (event === "error") {
          showProblem(turn, {error: {code: data.code, message: "no answer in time"}}, 504);
        }
      }
    }
  } catch (error) {
    showProblem(turn, {error: {code: "network_error", message: String(error)}}, 0);
  } finally {
    current = null;
    $("cancel").disabled = true;
    $("send").disabled = false;
  }
}

async function cancel() {
  if (current && current.requestId) {
    await fetch(`/v1/requests/${current.requestId}`, {method: "DELETE"});
  }
}

async function start() {
  const response = await fetch("/v1/businesses");
  businesses = await response.json();
  $("business").replaceChildren(...Object.keys(businesses).map((name) => new Option(name, name)));
  $("business").addEventListener("change", showBusiness);
  $("new-conversation").addEventListener("click", newConversation);
  $("cancel").addEventListener("click", cancel);
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("message").value.trim();
    if (!text) return;
    $("message").value = "";
    send(text);
  });
  showBusiness();
  document.body.dataset.ready = "true";
}

start();
