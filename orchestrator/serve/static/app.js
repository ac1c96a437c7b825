// The lav2 page: pick an image, ask, watch the experts' observations and the streamed answer.
// Talks to this server only (POST /v1/vqa with stream: true). Untrusted text (answers, OCR, web snippets) is
// only ever inserted with textContent, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const LABELS = {
  ocr: "OCR", detection: "Detection", caption: "Caption", local_search: "Local search", web_search: "Web search",
};

const state = {
  image: null,          // data URL of the chosen image
  imageName: "",
  mode: "auto",         // auto | pick | none
  experts: [],          // [{name, ready, reason, needs_image, description}]
  picked: new Set(),
  controller: null,     // AbortController of the running request
  key: sessionStorage.getItem("lav2-key") || "",
};

// ------------------------------------------------------------------ server
function headers(extra) {
  const h = Object.assign({}, extra || {});
  if (state.key) h["Authorization"] = "Bearer " + state.key;
  return h;
}

async function api(path, options) {
  const response = await fetch(path, Object.assign({}, options, { headers: headers((options || {}).headers) }));
  if (response.status === 401) {
    $("key-button").classList.remove("hidden");
    askForKey();
    const error = new Error("this server needs an API key");
    error.name = "AuthError";
    throw error;
  }
  return response;
}

async function errorMessage(response) {
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) return body.error.message;
  } catch (e) { /* not JSON */ }
  return `HTTP ${response.status}`;
}

async function connect() {
  setServer("loading", "connecting…");
  for (let attempt = 0; ; attempt++) {
    try {
      const response = await api("/v1/experts");
      if (response.status === 503) {
        setServer("loading", "loading model…");
        await sleep(1500);
        continue;
      }
      if (!response.ok) throw new Error(await errorMessage(response));
      const body = await response.json();
      state.experts = body.data || [];
      renderExperts();
      const models = await (await api("/v1/models")).json();
      const model = (models.data || [])[0] || {};
      setServer("ok", model.id || "model");
      $("model-chip").title = describeModel(model);
      $("ask").disabled = false;
      return;
    } catch (e) {
      setServer("error", e.message || "server unreachable");
      if (e.name === "AuthError" || attempt > 100) return;
      await sleep(2500);
    }
  }
}

function describeModel(model) {
  const info = model.lav2 || {};
  const parts = [`base: ${info.base || model.id}`];
  if (info.adapter) parts.push(`adapter: ${info.adapter}`);
  parts.push(`vision: ${info.vision ? "yes" : "no (experts read the image)"}`);
  if (info.weights) parts.push(`weights: ${info.weights}`);
  if (info.device) parts.push(`device: ${info.device}`);
  return parts.join("\n");
}

function setServer(kind, text) {
  $("server-state").dataset.state = kind;
  $("model-chip").textContent = text;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ------------------------------------------------------------------ experts
function renderExperts() {
  const box = $("experts");
  box.textContent = "";
  box.className = "experts " + state.mode;
  if (!state.experts.length) {
    box.append(span("muted", "this server has no experts configured"));
  }
  for (const e of state.experts) {
    const label = document.createElement("label");
    label.className = "expert" + (e.ready ? "" : " unavailable");
    label.title = e.ready ? (e.description || e.reason) : `unavailable: ${e.reason}`;
    const box_ = document.createElement("input");
    box_.type = "checkbox";
    box_.value = e.name;
    box_.disabled = !e.ready || state.mode !== "pick";
    box_.checked = state.picked.has(e.name);
    box_.addEventListener("change", () => {
      if (box_.checked) state.picked.add(e.name); else state.picked.delete(e.name);
    });
    label.dataset.expert = e.name;
    label.append(box_, span("", LABELS[e.name] || e.name),
      span("kind", e.ready ? (e.needs_image ? "image" : "query") : "unavailable"));
    box.append(label);
  }
  const ready = state.experts.filter((e) => e.ready).map((e) => LABELS[e.name] || e.name);
  $("experts-hint").textContent = {
    auto: `The router picks from the question${ready.length ? " among " + ready.join(", ") : ""}.`,
    pick: "Only the experts you tick are consulted.",
    none: "The model answers without any expert.",
  }[state.mode];
}

function setMode(mode) {
  state.mode = mode;
  for (const b of document.querySelectorAll(".seg")) b.setAttribute("aria-checked", String(b.dataset.mode === mode));
  if (mode === "pick" && !state.picked.size) {
    for (const e of state.experts) if (e.ready && e.needs_image) state.picked.add(e.name);
  }
  renderExperts();
}

function policy() {
  if (state.mode === "auto") return "auto";
  if (state.mode === "none") return "none";
  return Array.from(state.picked);
}

// ------------------------------------------------------------------ image
function useFile(file) {
  if (!file) return;
  if (!file.type.startsWith("image/")) {
    setStatus("error", `${file.name || "that file"} is not an image`);
    return;
  }
  const reader = new FileReader();
  reader.onload = () => {
    state.image = reader.result;
    state.imageName = `${file.name || "pasted image"} · ${formatBytes(file.size)}`;
    showImage();
  };
  reader.onerror = () => setStatus("error", "could not read the file");
  reader.readAsDataURL(file);
}

async function useExample() {
  try {
    const response = await fetch("/static/example-receipt.png");
    const blob = await response.blob();
    useFile(new File([blob], "example-receipt.png", { type: "image/png" }));
    if (!$("question").value.trim()) $("question").value = "What is the total on this receipt?";
  } catch (e) {
    setStatus("error", "could not load the example");
  }
}

function showImage() {
  const has = Boolean(state.image);
  $("example").classList.toggle("hidden", has);
  $("preview").classList.toggle("hidden", !has);
  $("drop").classList.toggle("has-image", has);
  $("image-info").classList.toggle("hidden", !has);
  if (has) {
    $("preview").src = state.image;
    $("image-name").textContent = state.imageName;
  } else {
    $("preview").removeAttribute("src");
    $("file").value = "";
  }
}

function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(0)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

// ------------------------------------------------------------------ asking
async function ask(event) {
  event.preventDefault();
  const question = $("question").value.trim();
  if (!question) { $("question").focus(); return; }
  if (state.controller) state.controller.abort();
  const controller = new AbortController();
  state.controller = controller;
  resetAnswer();
  setBusy(true);
  setStatus("working", state.mode === "none" ? "Answering…" : "Consulting experts…");
  const started = performance.now();
  let answer = "";
  try {
    const response = await api("/v1/vqa", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ image: state.image, question, experts: policy(), stream: true }),
      signal: controller.signal,
    });
    if (!response.ok) throw new Error(await errorMessage(response));
    for await (const chunk of events(response)) {
      if (chunk.error) throw new Error(chunk.error.message || "the server reported an error");
      if (chunk.router || chunk.experts) {
        renderContributions(chunk);
        setStatus("working", "Answering…");
      }
      if (chunk.visual_prefix) showVisualNote(chunk.visual_prefix);
      if (typeof chunk.answer === "string" && chunk.answer) {
        answer += chunk.answer;
        showAnswer(answer, true);
      }
      if (chunk.timings) showTimings(chunk.timings, chunk.usage);
    }
    showAnswer(answer.trim() || "(the model gave no answer)", false);
    remember(question, answer.trim());
    setStatus("done", `Done in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  } catch (e) {
    if (e.name === "AbortError") {
      showAnswer(answer || "(stopped)", false);
      setStatus("done", "Stopped");
    } else {
      $("answer").classList.add("error");
      $("answer").classList.remove("empty", "streaming");
      $("answer").textContent = e.message;
      setStatus("error", "Failed");
    }
  } finally {
    if (state.controller === controller) state.controller = null;
    setBusy(false);
  }
}

async function* events(response) {
  // server-sent events: "data: {...}\n\n" ... "data: [DONE]\n\n"
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) !== -1) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\n");
      if (!data) continue;
      if (data === "[DONE]") return;
      yield JSON.parse(data);
    }
  }
}

function resetAnswer() {
  markChosen([]);
  const a = $("answer");
  a.className = "answer";
  a.textContent = "";
  $("visual-note").classList.add("hidden");
  $("timings").classList.add("hidden");
  $("timings").textContent = "";
  const c = $("contributions");
  c.textContent = "";
  c.append(para("muted", "…"));
  $("skipped").classList.add("hidden");
}

function showAnswer(text, streaming) {
  const a = $("answer");
  a.classList.remove("empty", "error");
  a.classList.toggle("streaming", streaming);
  a.textContent = text;
}

function showVisualNote(note) {
  const el = $("visual-note");
  if (note === "on") {
    el.textContent = "The model sees the image itself (visual prefix on) and reads the experts' observations.";
  } else if (note.startsWith("off")) {
    el.textContent = "This model has no vision weights: it answers from the experts' observations below.";
  } else {
    el.textContent = "No image: the model answers from the question alone.";
  }
  el.classList.remove("hidden");
}

function showTimings(t, usage) {
  const el = $("timings");
  el.textContent = "";
  const items = [["experts", t.experts], ["answer", t.generate], ["total", t.total]];
  for (const [name, value] of items) {
    if (typeof value === "number") el.append(span("", `${name} ${value.toFixed(2)} s`));
  }
  if (usage) el.append(span("", `${usage.prompt_tokens} prompt + ${usage.completion_tokens} answer tokens`));
  el.classList.remove("hidden");
}

function remember(question, answer) {
  const list = $("history-list");
  const li = document.createElement("li");
  li.append(span("q", question), document.createElement("br"), span("", answer || "(no answer)"));
  list.prepend(li);
  while (list.children.length > 10) list.lastChild.remove();
  $("history").classList.toggle("hidden", list.children.length < 2);
}

function markChosen(chosen) {
  for (const chip of document.querySelectorAll(".expert")) {
    chip.classList.toggle("chosen", chosen.includes(chip.dataset.expert));
  }
}

function renderContributions(chunk) {
  markChosen((chunk.router || {}).chosen || []);
  const box = $("contributions");
  box.textContent = "";
  const router = chunk.router || {};
  const reasons = router.reasons || {};
  const seconds = ((chunk.timings || {}).per_expert) || {};
  const experts = chunk.experts || {};
  const errors = chunk.errors || {};
  const names = Object.keys(experts);
  if (!names.length) {
    box.append(para("muted", router.policy === "none" ? "No experts were asked." :
      "No expert was consulted for this question."));
  }
  for (const name of names) {
    const failed = name in errors;
    const card = document.createElement("article");
    card.className = "card" + (failed ? " failed" : "");
    card.dataset.expert = name;
    const head = document.createElement("div");
    head.className = "card-head";
    head.append(span("card-name", LABELS[name] || name));
    if (typeof seconds[name] === "number") head.append(span("card-time", `${seconds[name].toFixed(2)} s`));
    card.append(head);
    if (reasons[name]) card.append(para("card-reason", reasons[name]));
    const pre = document.createElement("pre");
    const text = failed ? errors[name] : experts[name];
    pre.textContent = text && String(text).trim() ? String(text) : "(nothing found)";
    card.append(pre);
    box.append(card);
  }
  const skipped = Object.entries(reasons).filter(([name]) => !(name in experts));
  const list = $("skipped-list");
  list.textContent = "";
  for (const [name, why] of skipped) {
    const li = document.createElement("li");
    li.textContent = `${LABELS[name] || name}: ${why}`;
    list.append(li);
  }
  $("skipped").classList.toggle("hidden", !skipped.length);
}

function setStatus(kind, text) {
  const s = $("status");
  s.dataset.state = kind;
  s.textContent = text;
}

function setBusy(busy) {
  $("ask").disabled = busy;
  $("stop").classList.toggle("hidden", !busy);
}

function span(cls, text) {
  const el = document.createElement("span");
  if (cls) el.className = cls;
  el.textContent = text;
  return el;
}

function para(cls, text) {
  const el = document.createElement("p");
  if (cls) el.className = cls;
  el.textContent = text;
  return el;
}

// ------------------------------------------------------------------ API key
function askForKey() {
  const dialog = $("key-dialog");
  if (dialog.open) return;
  $("key-input").value = state.key;
  dialog.showModal();
}

function wire() {
  $("file").addEventListener("change", (e) => useFile(e.target.files[0]));
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("dragging"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("dragging"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("dragging");
    useFile(e.dataTransfer.files[0]);
  });
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("file").click(); } });
  document.addEventListener("paste", (e) => {
    const item = Array.from(e.clipboardData.items || []).find((i) => i.type.startsWith("image/"));
    if (item) { e.preventDefault(); useFile(item.getAsFile()); }
  });
  $("try-example").addEventListener("click", useExample);
  $("clear-image").addEventListener("click", (e) => { e.preventDefault(); state.image = null; showImage(); });
  for (const b of document.querySelectorAll(".seg")) b.addEventListener("click", () => setMode(b.dataset.mode));
  $("ask-form").addEventListener("submit", ask);
  $("question").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) $("ask-form").requestSubmit();
  });
  $("stop").addEventListener("click", () => { if (state.controller) state.controller.abort(); });
  $("key-button").addEventListener("click", askForKey);
  $("key-cancel").addEventListener("click", () => $("key-dialog").close());
  $("key-form").addEventListener("submit", () => {
    state.key = $("key-input").value.trim();
    sessionStorage.setItem("lav2-key", state.key);
    connect();
  });
}

wire();
connect();
