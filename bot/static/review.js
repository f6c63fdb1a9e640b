// The review page: the faces users marked, in a grid; approve, reject or relabel each, by click or by key.
// Every change goes to /review/api/... with the session's CSRF token; the store is the only state. Each face's
// evidence (what the model compared it with) is asked for once per face, one face at a time, and kept only here.
"use strict";

const $ = (id) => document.getElementById(id);
let csrf = ""; // this session's token, sent with every change
let classes = []; // [{name, display}]: relabel targets, numbered 1..9 for the keys
let items = []; // the faces on show, oldest first
let selected = 0; // the index in `items` the keys act on
const evidence = new Map(); // face id -> its /review/api/why answer, while the page is open
let looking = 0; // bumped by each load: an older round of asking for evidence stops

function say(text) {
  $("said").textContent = text || "";
}

function problem(text) {
  $("problem").textContent = text || "";
  $("problem").hidden = !text;
}

function shown(name) {
  if (name === null || name === "neither") return "neither of them";
  return classes.find((c) => c.name === name)?.display ?? name.replaceAll("_", " ");
}

function percent(p) {
  return `${Math.round(p * 100)}%`;
}

async function call(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  if (response.status === 401) {
    window.location.reload(); // signed out (expired, or a new token): the page asks for the token again
    return null;
  }
  let body = {};
  try {
    body = await response.json();
  } catch {
    body = { message: `Something went wrong (HTTP ${response.status}).` };
  }
  if (!response.ok) throw new Error(body.message || `HTTP ${response.status}`);
  return body;
}

function change(verb, payload) {
  return call(`/review/api/${verb}`, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
    body: JSON.stringify(payload),
  });
}

function text(tag, className, content) {
  const element = document.createElement(tag);
  if (className) element.className = className;
  element.textContent = content;
  return element;
}

function button(label, act, value, key) {
  const element = text("button", "", "");
  element.type = "button";
  element.dataset.act = act;
  if (value !== undefined) element.dataset.value = value;
  if (key) element.append(text("kbd", "", key), " ");
  element.append(label);
  return element;
}

function modelLine(item) {
  const name = shown(item.model_label);
  const said = item.model_known ? `${name}, ${percent(item.model_confidence)}` : `someone else (closest: ${name})`;
  const distance = item.model_distance === null ? "" : ` · distance ${item.model_distance.toFixed(2)}`;
  return `Model: ${said}${distance}`;
}

function votesLine(item) {
  const parts = Object.entries(item.votes).map(([verdict, n]) => `${shown(verdict)} ${n}`);
  return `Users: ${parts.join(" · ") || "none"}`;
}

function card(item, index) {
  const element = document.createElement("article");
  element.className = `card ${item.status}`;
  element.dataset.id = String(item.id);
  element.dataset.index = String(index);
  element.tabIndex = -1;
  const img = document.createElement("img");
  img.src = item.chip;
  img.alt = `Face ${item.id}`;
  img.width = 150;
  img.height = 150;
  img.loading = "lazy";
  const label = text("p", "label", `Users say: ${shown(item.label)}`);
  const where = item.platform === "web" ? "web page" : `${item.platform} ${item.chat_kind}`;
  const meta = text("p", "meta", `#${item.id} · ${where} · ${item.created_at.slice(0, 16).replace("T", " ")}`);
  if (item.status !== "waiting") meta.append(" · ", text("strong", "status", item.status));
  const actions = document.createElement("div");
  actions.className = "actions";
  actions.append(button("Approve", "approve", undefined, "a"), button("Reject", "reject", undefined, "r"));
  const relabel = document.createElement("div");
  relabel.className = "relabel";
  classes.forEach((c, i) => relabel.append(button(c.display, "relabel", c.name, i < 9 ? String(i + 1) : "")));
  relabel.append(button("Neither", "relabel", "neither", "n"));
  element.append(img, label, text("p", "model", modelLine(item)), text("p", "votes", votesLine(item)), meta);
  const why = document.createElement("div");
  why.className = "evidence";
  why.append(text("p", "because", "Why: looking…"));
  element.append(why, actions, relabel);
  if (evidence.has(item.id)) showEvidence(element, evidence.get(item.id));
  return element;
}

// What the model compared the face with: the picture (the face beside each person's nearest training faces) and
// the line, or why it can't be shown.
function showEvidence(element, body) {
  const why = element.querySelector(".evidence");
  const parts = [];
  const picture = body.outcome === "explained" ? body.evidence?.picture : null;
  if (picture) {
    const img = document.createElement("img");
    img.src = `data:image/jpeg;base64,${picture}`;
    img.alt = `Face ${element.dataset.id} beside the nearest training faces of each person`;
    parts.push(img);
  }
  parts.push(text("p", body.outcome === "explained" ? "because" : "because refused", `Why: ${body.message || ""}`));
  why.replaceChildren(...parts);
  why.dataset.state = body.outcome === "explained" ? "shown" : "refused";
}

async function lookAll() {
  const round = ++looking;
  for (const item of [...items]) {
    if (round !== looking) return;
    if (!evidence.has(item.id)) {
      let body;
      try {
        body = await call(`/review/api/why/${item.id}`);
      } catch (error) {
        body = { outcome: "refused", message: error.message };
      }
      if (!body) return; // signed out: the page reloads
      evidence.set(item.id, body);
    }
    const element = $("grid").querySelector(`.card[data-id="${item.id}"]`);
    if (element) showEvidence(element, evidence.get(item.id));
  }
}

function select(index, focus = true) {
  const cards = $("grid").children;
  if (!cards.length) return;
  selected = Math.max(0, Math.min(index, cards.length - 1));
  for (const element of cards) element.classList.toggle("selected", Number(element.dataset.index) === selected);
  if (focus) cards[selected].focus({ preventScroll: false });
}

function render() {
  $("grid").replaceChildren(...items.map(card));
  $("count").textContent = `${items.length} face${items.length === 1 ? "" : "s"}`;
  $("empty").hidden = items.length > 0;
  select(selected, false);
}

async function load() {
  try {
    const body = await call(`/review/api/items?status=${encodeURIComponent($("status").value)}`);
    if (!body) return;
    csrf = body.csrf;
    classes = body.classes;
    items = body.items;
    problem("");
    render();
    lookAll();
  } catch (error) {
    problem(error.message);
  }
  document.body.dataset.state = "ready";
}

async function act(index, verb, value) {
  const item = items[index];
  if (!item) return;
  const label = verb === "relabel" ? value : item.label;
  document.body.dataset.state = "busy";
  try {
    if (verb === "relabel") await change("relabel", { id: item.id, label: value });
    else await change(verb, { ids: [item.id] });
    const done = verb === "reject" ? `Rejected #${item.id}.` : `Approved #${item.id} as ${shown(label)}.`;
    const status = $("status").value;
    if (status === "all" || status === (verb === "reject" ? "rejected" : "approved")) {
      await load(); // the face stays on show, with its new status and label
    } else {
      items.splice(index, 1);
      render();
      select(index);
    }
    say(done);
  } catch (error) {
    say(`#${item.id}: ${error.message}`);
  }
  document.body.dataset.state = "ready";
}

function keys(event) {
  if (event.altKey || event.ctrlKey || event.metaKey || event.target.closest?.("select, input")) return;
  const key = event.key;
  const move = { j: 1, ArrowRight: 1, ArrowDown: 1, k: -1, ArrowLeft: -1, ArrowUp: -1 }[key];
  if (move) {
    event.preventDefault();
    select(selected + move);
  } else if (key === "a") act(selected, "approve");
  else if (key === "r") act(selected, "reject");
  else if (key === "n") act(selected, "relabel", "neither");
  else if (/^[1-9]$/.test(key) && classes[Number(key) - 1]) act(selected, "relabel", classes[Number(key) - 1].name);
}

function setUp() {
  $("grid").addEventListener("click", (event) => {
    const target = event.target.closest("button[data-act]");
    const element = event.target.closest(".card");
    if (!element) return;
    const index = Number(element.dataset.index);
    select(index);
    if (target) act(index, target.dataset.act, target.dataset.value);
  });
  document.addEventListener("keydown", keys);
  $("status").addEventListener("change", () => {
    selected = 0;
    load();
  });
  $("logout").addEventListener("click", async () => {
    await call("/review/logout", { method: "POST", headers: { "X-CSRF-Token": csrf } }).catch(() => {});
    window.location.reload();
  });
  load();
}

setUp();
