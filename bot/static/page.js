// The page: send one photo to /api/classify, then draw a numbered box on each face and list the answers, with
// the feedback buttons under each face (a press sends the photo again to /api/feedback with the face's number)
// and a Why? link (which sends it again to /api/why?face=N and shows the face's evidence under it).
// Every answer's words come from the server (the bot's core), in the page's language; so do the few words this
// script writes itself (the JSON block #page-texts, bot/web_page.py's SCRIPT_TEXTS). The language picker remembers
// the reader's choice in the `lang` cookie, which the server reads before Accept-Language.
"use strict";

const $ = (id) => document.getElementById(id);
const PAGE = JSON.parse($("page-texts").textContent); // { language, tag, texts }
const NUMBER = new Intl.NumberFormat(PAGE.tag);
const PERCENT = new Intl.NumberFormat(PAGE.tag, { style: "percent", maximumFractionDigits: 0 });
const LANGUAGE_COOKIE_DAYS = 365;
let inFlight = null; // the AbortController of the upload being answered: a newer photo replaces it
let photoUrl = null; // the object URL of the photo on show, revoked when the next one comes
let asked = null; // the photo on show: a press on a feedback button sends it again

function say(id, text) {
  const element = $(id);
  element.textContent = text || "";
  element.hidden = !text;
}

// A text of the page's language with its {placeholders} filled (numbers written as the language writes them).
function t(key, values = {}) {
  return PAGE.texts[key].replace(/\{(\w+)\}/g, (whole, name) => {
    if (!(name in values)) return whole;
    const value = values[name];
    return typeof value === "number" ? NUMBER.format(value) : String(value);
  });
}

// Every request says which language the page is in, which may be a `?lang=` of the page's own address.
function api(path) {
  const url = new URL(path, document.baseURI);
  url.searchParams.set("lang", PAGE.tag);
  return url;
}

function percent(p) {
  return PERCENT.format(p);
}

function capitalised(text) {
  return text ? text[0].toUpperCase() + text.slice(1) : "";
}

// "unknown" when the model says the face is neither person (older models send no `known` at all); "unnamed"
// when the face is too small, blurred or turned away to name (drawn grey too; its line says why).
function kind(face) {
  if (face.quality && face.quality !== "ok") return "unnamed";
  if (face.known === false) return "unknown";
  return face.sure ? "sure" : "unsure";
}

async function loadAbout() {
  try {
    const about = await (await fetch(api("api/about"))).json();
    $("model").textContent = about.about;
    say("problem", about.ready ? "" : about.message);
    $("keeping").hidden = !about.feedback;
    $("forgetting").hidden = !about.feedback;
  } catch {
    $("model").textContent = t("unreachable");
  }
}

async function showPhoto(file) {
  if (photoUrl) URL.revokeObjectURL(photoUrl);
  photoUrl = URL.createObjectURL(file);
  const img = $("photo");
  img.src = photoUrl;
  try {
    await img.decode();
    return true;
  } catch {
    return false; // a format this browser can't show (TIFF, say): the answers still come
  }
}

async function ask(file, signal) {
  const form = new FormData();
  form.append("image", file, file.name || "pasted-image");
  let response;
  try {
    response = await fetch(api("api/classify"), { method: "POST", body: form, signal });
  } catch (error) {
    if (signal.aborted) throw error;
    return { outcome: "refused", message: t("unreachable") };
  }
  try {
    return await response.json();
  } catch {
    return { outcome: "refused", message: t("failed_status", { status: String(response.status) }) };
  }
}

function drawBoxes(faces, lines) {
  const img = $("photo");
  const boxes = $("boxes");
  boxes.replaceChildren();
  const width = img.naturalWidth;
  const height = img.naturalHeight;
  faces.forEach((face, i) => {
    const [left, top, right, bottom] = face.box;
    const box = document.createElement("div");
    box.className = `box ${kind(face)}`;
    box.dataset.face = String(i + 1);
    box.title = lines[i];
    // Boxes are in the upright photo's pixels, which is also how the browser shows it (EXIF applied).
    box.style.left = `${(100 * left) / width}%`;
    box.style.top = `${(100 * top) / height}%`;
    box.style.width = `${(100 * (right - left)) / width}%`;
    box.style.height = `${(100 * (bottom - top)) / height}%`;
    const tag = document.createElement("span");
    tag.className = "tag";
    tag.textContent = String(i + 1);
    box.append(tag);
    boxes.append(box);
  });
}

// Under a face: one button per class (the model's answer marked ✓) and "Neither of them", as the chat bots show.
function choicesOf(choices, number) {
  const box = document.createElement("div");
  box.className = "choices";
  box.setAttribute("role", "group");
  box.setAttribute("aria-label", t("who_really", { n: number }));
  for (const choice of choices) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "choice";
    button.textContent = choice.text;
    button.dataset.verdict = choice.verdict;
    box.append(button);
  }
  const said = document.createElement("p");
  said.className = "said";
  said.setAttribute("role", "status");
  box.append(said);
  box.addEventListener("click", (event) => {
    const button = event.target.closest("button.choice");
    if (button) press(box, number, button);
  });
  return box;
}

async function press(box, number, button) {
  const photo = asked;
  const said = box.querySelector(".said");
  const buttons = box.querySelectorAll("button.choice");
  for (const other of buttons) other.disabled = true;
  said.textContent = t("sending");
  const form = new FormData();
  form.append("image", photo, photo.name || "pasted-image");
  form.append("face", String(number));
  form.append("verdict", button.dataset.verdict);
  let body;
  try {
    const response = await fetch(api("api/feedback"), { method: "POST", body: form });
    body = await response.json();
  } catch {
    body = { outcome: "refused", message: t("unreachable") };
  }
  if (asked !== photo) return; // another photo is on show now
  for (const other of buttons) {
    other.disabled = false;
    other.classList.toggle("chosen", body.outcome === "recorded" && other === button);
  }
  said.textContent = body.message || "";
  said.classList.toggle("refused", body.outcome !== "recorded");
  box.dataset.state = body.outcome === "recorded" ? "sent" : "refused";
}

// Under a face: "Why?", which shows what the model compared it with (a picture and a line) under the link.
function whyOf(number) {
  const box = document.createElement("div");
  box.className = "why";
  const link = document.createElement("button");
  link.type = "button";
  link.className = "link why-link";
  link.textContent = t("why");
  link.setAttribute("aria-expanded", "false");
  const evidence = document.createElement("div");
  evidence.className = "evidence";
  evidence.setAttribute("role", "status");
  evidence.hidden = true;
  link.addEventListener("click", () => explain(box, number));
  box.append(link, evidence);
  return box;
}

async function explain(box, number) {
  const link = box.querySelector(".why-link");
  const evidence = box.querySelector(".evidence");
  if (box.dataset.state === "shown") {
    // Shown once: the link folds and unfolds it, without asking again.
    evidence.hidden = !evidence.hidden;
    link.setAttribute("aria-expanded", String(!evidence.hidden));
    return;
  }
  const photo = asked;
  link.disabled = true;
  box.dataset.state = "asking";
  evidence.hidden = false;
  evidence.replaceChildren(paragraph("said", t("looking")));
  const form = new FormData();
  form.append("image", photo, photo.name || "pasted-image");
  let body;
  try {
    const response = await fetch(api(`api/why?face=${number}`), { method: "POST", body: form });
    body = await response.json();
  } catch {
    body = { outcome: "refused", message: t("unreachable") };
  }
  if (asked !== photo) return; // another photo is on show now
  link.disabled = false;
  const shown = body.outcome === "explained";
  const parts = [];
  if (shown && body.evidence?.picture) {
    const img = document.createElement("img");
    img.src = `data:image/jpeg;base64,${body.evidence.picture}`;
    img.alt = t("evidence_alt", { n: number });
    parts.push(img);
  }
  parts.push(paragraph(shown ? "because" : "said refused", body.message || ""));
  evidence.replaceChildren(...parts);
  link.setAttribute("aria-expanded", "true");
  box.dataset.state = shown ? "shown" : "refused";
}

function paragraph(className, text) {
  const element = document.createElement("p");
  element.className = className;
  element.textContent = text;
  return element;
}

async function forget() {
  $("forget").disabled = true;
  let body;
  try {
    body = await (await fetch(api("api/forget"), { method: "POST" })).json();
  } catch {
    body = { message: t("unreachable") };
  }
  $("forget").disabled = false;
  $("forgotten").textContent = body.message || "";
  document.body.dataset.forgotten = body.outcome || "refused";
}

function faceItem(face, line, number, choices, why) {
  const item = document.createElement("li");
  item.className = `face ${kind(face)}`;
  item.dataset.face = String(number);
  const title = document.createElement("p");
  title.className = "line";
  const num = document.createElement("span");
  num.className = "num";
  num.textContent = String(number);
  const words = document.createElement("span");
  words.className = "words";
  words.textContent = line;
  title.append(num, words);
  const bars = document.createElement("div");
  bars.className = "bars";
  for (const [name, p] of Object.entries(face.probabilities || {})) {
    const row = document.createElement("div");
    row.className = "bar-row";
    const label = document.createElement("span");
    label.className = "class";
    label.textContent = name.replaceAll("_", " "); // folder names: Amber_Heard reads "Amber Heard"
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.setAttribute("role", "meter");
    bar.setAttribute("aria-label", name);
    bar.setAttribute("aria-valuemin", "0");
    bar.setAttribute("aria-valuemax", "100");
    bar.setAttribute("aria-valuenow", String(Math.round(p * 100)));
    const fill = document.createElement("span");
    fill.className = "fill";
    fill.style.width = `${100 * p}%`; // CSS's percent, not the language's ("97 %" is no width)
    bar.append(fill);
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = percent(p);
    row.append(label, bar, value);
    bars.append(row);
  }
  item.append(title, bars);
  if (choices && choices.length) item.append(choicesOf(choices, number));
  if (why) item.append(whyOf(number));
  return item;
}

function render(answer, shown) {
  const ok = answer.outcome === "ok";
  const faces = ok ? answer.faces : [];
  const lines = faces.map((face, i) => capitalised(answer.reply?.faces?.[i] ?? face.label));
  say("message", ok ? "" : answer.reply?.text || answer.message || t("failed"));
  say("summary", ok ? answer.reply?.summary || NUMBER.format(faces.length) : "");
  const choices = ok ? answer.reply?.choices : null;
  const why = ok && answer.reply?.why === true;
  $("faces").replaceChildren(...faces.map((face, i) => faceItem(face, lines[i], i + 1, choices?.[i], why)));
  // The photo stays on show when it was read (with or without faces), not for a refused file.
  $("figure").hidden = !shown || !(ok || answer.outcome === "no_face");
  if (shown && ok) drawBoxes(faces, lines);
  // Faces seen but not named (too small, blurred, turned away): grey boxes, each titled with its reason.
  const away = answer.outcome === "no_face" ? answer.turned_away || [] : [];
  if (shown && away.length) {
    drawBoxes(
      away.map((face) => ({ ...face, quality: face.quality || "too_small" })),
      away.map((face, i) => answer.reply?.turned_away?.[i] ?? face.reason ?? ""),
    );
  }
}

async function send(file) {
  inFlight?.abort();
  const controller = new AbortController();
  inFlight = controller;
  asked = file;
  document.body.dataset.state = "asking";
  $("result").hidden = false;
  $("boxes").replaceChildren();
  $("faces").replaceChildren();
  say("message", "");
  say("summary", "");
  say("status", t("looking_at_photo"));
  try {
    const [shown, answer] = await Promise.all([showPhoto(file), ask(file, controller.signal)]);
    if (inFlight !== controller) return;
    render(answer, shown);
    document.body.dataset.state = "answered";
  } catch (error) {
    if (!controller.signal.aborted) throw error;
  } finally {
    if (inFlight === controller) say("status", "");
  }
}

// The picker: remembered for a year (the server reads the cookie on every later visit), then the page again in
// that language; a `?lang=` in the address would outrank the choice, so it is dropped.
function chooseLanguage(tag) {
  const maxAge = LANGUAGE_COOKIE_DAYS * 24 * 60 * 60;
  document.cookie = `lang=${encodeURIComponent(tag)}; Path=/; Max-Age=${maxAge}; SameSite=Lax`;
  const url = new URL(location.href);
  url.searchParams.delete("lang");
  location.assign(url);
}

function firstFile(files) {
  return files && files.length ? files[0] : null;
}

function highlight(face, on) {
  for (const element of document.querySelectorAll(`[data-face="${face}"]`)) element.classList.toggle("hot", on);
}

function setUp() {
  const drop = $("drop");
  $("file").addEventListener("change", (event) => {
    const file = firstFile(event.target.files);
    event.target.value = ""; // choosing the same file again still sends it
    if (file) send(file);
  });
  // The whole window takes drops, so a near miss does not make the browser open the photo instead.
  document.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  document.addEventListener("dragleave", (event) => {
    if (!event.relatedTarget) drop.classList.remove("over");
  });
  document.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const file = firstFile(event.dataTransfer?.files);
    if (file) send(file);
    else say("status", t("not_a_file"));
  });
  document.addEventListener("paste", (event) => {
    const file = firstFile(event.clipboardData?.files);
    if (!file) return; // pasting text into the page is none of our business
    event.preventDefault();
    send(file);
  });
  for (const type of ["mouseover", "mouseout"]) {
    document.addEventListener(type, (event) => {
      const face = event.target.closest?.("[data-face]")?.dataset.face;
      if (face) highlight(face, type === "mouseover");
    });
  }
  $("forget").addEventListener("click", forget);
  $("language").addEventListener("change", (event) => chooseLanguage(event.target.value));
  document.body.dataset.state = "ready";
  loadAbout();
}

setUp();
