// The pgmre page: mark two entities in a post, send it to POST /predict, show the relation and why.
// All text from the user or the server is inserted with textContent (never as HTML).
"use strict";

const $ = (id) => document.getElementById(id);
// A marked entity is a character span of the text (from a selection); a typed name has none.
const marks = { head: null, tail: null };
let info = null;

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

async function loadInfo() {
  try {
    const response = await fetch("/health");
    info = await response.json();
  } catch (err) {
    showError(`cannot reach the server: ${err}`);
    return;
  }
  $("model").textContent = `model: ${info.model}; visual input: ${info.inputs.visual}; ` +
    `explanations: ${info.inputs.explanations ? "yes" : "no"}`;
  $("image-field").hidden = info.inputs.visual !== "image";
  $("caption-field").hidden = info.inputs.visual !== "caption";
  $("explanations-field").hidden = !info.inputs.explanations;
  $("text").maxLength = info.limits.max_text_chars;
  const labels = await (await fetch("/labels")).json();
  $("top-k").max = String(labels.labels.length);
}

// The browser counts UTF-16 code units; the server counts characters (code points), which differ
// from the first emoji or other character outside the Basic Multilingual Plane.
function codePoints(text) {
  return Array.from(text).length;
}

function mark(role) {
  const area = $("text");
  const selected = area.value.slice(area.selectionStart, area.selectionEnd);
  const start = codePoints(area.value.slice(0, area.selectionStart));
  const end = start + codePoints(selected);
  if (end <= start || selected.trim() === "") {
    showError(`select the ${role} entity's words in the text first`);
    return;
  }
  clearError();
  marks[role] = { chars: [start, end], name: selected };
  $(role).value = selected;
  $(`${role}-where`).textContent = `characters ${start}–${end} of the text`;
}

function unmark(role) {
  marks[role] = null;
  $(`${role}-where`).textContent = "";
}

// What is sent for an entity: the marked span, or the typed name (found in the text by the server).
function entityField(role) {
  const typed = $(role).value;
  if (marks[role] && marks[role].name === typed) {
    return JSON.stringify({ name: marks[role].name, chars: marks[role].chars });
  }
  return typed;
}

function buildForm() {
  const form = new FormData();
  form.append("text", $("text").value);
  form.append("head", entityField("head"));
  form.append("tail", entityField("tail"));
  form.append("top_k", $("top-k").value || "5");
  if (info && info.inputs.visual === "image" && $("image").files.length > 0) {
    form.append("image", $("image").files[0]);
  }
  if (info && info.inputs.visual === "caption" && $("caption").value.trim() !== "") {
    form.append("caption", $("caption").value);
  }
  const headExpl = $("head-explanation").value.trim();
  const tailExpl = $("tail-explanation").value.trim();
  if (info && info.inputs.explanations && (headExpl || tailExpl)) {
    form.append("explanations", JSON.stringify({ head: headExpl, tail: tailExpl }));
  }
  return form;
}

// The post's tokens with each entity's words in one <mark> (the head wins where the spans overlap).
function renderPost(result) {
  const roleAt = (i) => ["head", "tail"].find((role) => i >= result[role].pos[0] && i < result[role].pos[1]);
  const post = $("post");
  post.replaceChildren();
  const tokens = result.tokens;
  let i = 0;
  while (i < tokens.length) {
    const role = roleAt(i);
    let j = i + 1;
    while (role && j < tokens.length && roleAt(j) === role) j += 1;
    const words = tokens.slice(i, j).join(" ");
    if (role) {
      const mark = document.createElement("mark");
      mark.className = role;
      mark.title = role;
      mark.textContent = words;
      post.appendChild(mark);
    } else {
      post.appendChild(document.createTextNode(words));
    }
    post.appendChild(document.createTextNode(" "));
    i = j;
  }
}

function renderBars(result) {
  const bars = $("bars");
  bars.replaceChildren();
  for (const { relation, probability } of result.top_k) {
    const item = document.createElement("li");
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = relation;
    const track = document.createElement("span");
    track.className = "track";
    const fill = document.createElement("span");
    fill.className = "fill";
    fill.style.display = "block";
    fill.style.width = `${(probability * 100).toFixed(1)}%`;
    track.appendChild(fill);
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = `${(probability * 100).toFixed(1)}%`;
    item.append(name, track, value);
    bars.appendChild(item);
  }
}

function renderWhy(result) {
  const why = $("why");
  why.replaceChildren();
  const rows = [];
  if (result.explanations) {
    rows.push([`head: ${result.head.name}`, result.explanations.head]);
    rows.push([`tail: ${result.tail.name}`, result.explanations.tail]);
  } else {
    rows.push(["explanations", "not used by this model"]);
  }
  rows.push(["attribute prototype", result.attribute_prototype ?? "not used"]);
  rows.push(["relation prototype", result.relation_prototype ?? "not used"]);
  rows.push(["visual inputs seen", String(result.visual_slots)]);
  for (const [term, detail] of rows) {
    const dt = document.createElement("dt");
    dt.textContent = term;
    const dd = document.createElement("dd");
    dd.textContent = String(detail);
    why.append(dt, dd);
  }
}

function render(result) {
  $("relation").textContent = result.relation;
  $("probability").textContent = `(${(result.probability * 100).toFixed(1)}%)`;
  renderPost(result);
  renderBars(result);
  renderWhy(result);
  $("result").hidden = false;
}

async function predict(event) {
  event.preventDefault();
  clearError();
  if (!$("text").value.trim() || !$("head").value.trim() || !$("tail").value.trim()) {
    showError("fill in the text, the head and the tail entity");
    return;
  }
  $("predict").disabled = true;
  $("busy").hidden = false;
  try {
    const response = await fetch("/predict", { method: "POST", body: buildForm() });
    const payload = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
    if (!response.ok) {
      $("result").hidden = true;
      showError(payload.error || `HTTP ${response.status}`);
      return;
    }
    render(payload);
  } catch (err) {
    showError(`request failed: ${err}`);
  } finally {
    $("predict").disabled = false;
    $("busy").hidden = true;
  }
}

function previewImage() {
  const preview = $("image-preview");
  const file = $("image").files[0];
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.hidden = !file;
  if (file) preview.src = URL.createObjectURL(file);
}

document.addEventListener("DOMContentLoaded", () => {
  $("mark-head").addEventListener("click", () => mark("head"));
  $("mark-tail").addEventListener("click", () => mark("tail"));
  // Offsets are only valid for the text they were taken from.
  $("text").addEventListener("input", () => { unmark("head"); unmark("tail"); });
  $("head").addEventListener("input", () => unmark("head"));
  $("tail").addEventListener("input", () => unmark("tail"));
  $("image").addEventListener("change", previewImage);
  $("form").addEventListener("submit", predict);
  loadInfo();
});
