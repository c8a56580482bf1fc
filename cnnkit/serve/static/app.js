// cnnkit's page: draw on the canvas or drop/pick an image; POST it to /predict and /explain of the
// chosen model and show the top classes, the image the model saw and the Grad-CAM overlay.
// Plain JS, no dependencies, no network beyond this server (works offline).
"use strict";

const $ = (id) => document.getElementById(id);
const canvas = $("canvas");
const ctx = canvas.getContext("2d");
const state = { drawing: false, dirty: false, last: null, seq: 0 };

function clearCanvas() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  state.dirty = false;
}

function setupBrush() {
  // A pen about 1/12 of the canvas: about MNIST's stroke once the digit is fitted into 20x20.
  ctx.lineWidth = Math.round(canvas.width / 12);
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.strokeStyle = "#000";
}

function point(event) {
  const r = canvas.getBoundingClientRect();
  return { x: (event.clientX - r.left) * (canvas.width / r.width), y: (event.clientY - r.top) * (canvas.height / r.height) };
}

canvas.addEventListener("pointerdown", (e) => {
  state.drawing = true;
  state.last = point(e);
  canvas.setPointerCapture(e.pointerId);
  ctx.beginPath();
  ctx.arc(state.last.x, state.last.y, ctx.lineWidth / 2, 0, 2 * Math.PI);
  ctx.fillStyle = "#000";
  ctx.fill();
  state.dirty = true;
});
canvas.addEventListener("pointermove", (e) => {
  if (!state.drawing) return;
  const p = point(e);
  ctx.beginPath();
  ctx.moveTo(state.last.x, state.last.y);
  ctx.lineTo(p.x, p.y);
  ctx.stroke();
  state.last = p;
});
function endStroke() {
  if (!state.drawing) return;
  state.drawing = false;
  if (state.dirty) canvas.toBlob((blob) => send(blob, "drawing.png"), "image/png");
}
canvas.addEventListener("pointerup", endStroke);
canvas.addEventListener("pointercancel", endStroke);

$("clear").addEventListener("click", () => {
  clearCanvas();
  $("bars").innerHTML = "";
  $("top-label").textContent = "";
  $("seen").removeAttribute("src");
  $("cam").removeAttribute("src");
  $("steps").textContent = "";
  $("error").textContent = "";
});

$("file").addEventListener("change", (e) => {
  const f = e.target.files[0];
  if (f) send(f, f.name);
});
const drop = $("drop");
["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.add("over"); }));
["dragleave", "drop"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.remove("over"); }));
drop.addEventListener("drop", (e) => {
  const f = e.dataTransfer.files[0];
  if (f) send(f, f.name);
});
$("model").addEventListener("change", () => { if (state.dirty) canvas.toBlob((b) => send(b, "drawing.png"), "image/png"); });

function modelPath() {
  const v = $("model").value;
  if (!v) return "";
  const [name, version] = v.split("@");
  return `/models/${encodeURIComponent(name)}/versions/${version}`;
}

async function post(path, blob, filename, query) {
  const form = new FormData();
  form.append("file", blob, filename);
  const res = await fetch(`${modelPath()}${path}?${query}`, { method: "POST", body: form });
  const body = await res.json().catch(() => ({ error: `HTTP ${res.status}` }));
  if (!res.ok) throw new Error(body.error || `HTTP ${res.status}`);
  return body;
}

async function send(blob, filename) {
  const seq = ++state.seq;  // answers to older requests are dropped
  const mode = $("preprocess").checked ? "auto" : "plain";
  $("error").textContent = "";
  $("status").textContent = "predicting…";
  try {
    const started = performance.now();
    const out = await post("/predict", blob, filename, `top_k=5&include_input=true&preprocess=${mode}`);
    if (seq !== state.seq) return;
    showPrediction(out.results[0], performance.now() - started, out);
    const cam = await post("/explain", blob, filename, `top_k=1&preprocess=${mode}`);
    if (seq !== state.seq) return;
    $("cam").src = cam.results[0].overlay;
  } catch (err) {
    if (seq !== state.seq) return;
    $("error").textContent = err.message;
    $("status").textContent = "";
  }
}

function showPrediction(result, ms, out) {
  const bars = $("bars");
  bars.innerHTML = "";
  for (const p of result.predictions) {
    const li = document.createElement("li");
    const pct = (100 * p.probability).toFixed(1);
    li.innerHTML = `<span class="label"></span><span class="track"><span class="fill" style="width:${pct}%"></span></span>` +
                   `<span class="prob">${pct}%</span>`;
    li.querySelector(".label").textContent = p.label;
    bars.appendChild(li);
  }
  $("top-label").textContent = result.predictions[0].label;
  $("seen").src = result.input;
  $("steps").textContent = "preprocessing: " + (result.preprocessing.join(" → ") || "none");
  $("status").textContent = `${out.model} v${out.version} · ${ms.toFixed(0)} ms`;
}

async function loadModels() {
  try {
    const res = await fetch("/models");
    const body = await res.json();
    const select = $("model");
    for (const m of body.models) {
      const opt = document.createElement("option");
      opt.value = `${m.name}@${m.version}`;
      opt.textContent = `${m.name} v${m.version}${m.current ? "" : " (not current)"} · ${m.backend}`;
      if (m.name === body.default && m.current) opt.selected = true;
      select.appendChild(opt);
    }
    $("status").textContent = "ready";
    document.body.dataset.ready = "1";
  } catch (err) {
    $("error").textContent = `cannot list models: ${err.message}`;
  }
}

setupBrush();
clearCanvas();
loadModels();
