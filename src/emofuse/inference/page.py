"""The web page `emofuse serve` answers at /: one static HTML document with inline CSS and JS
(no build step, nothing fetched from elsewhere). It posts the clip to /predict?frames=true and
draws the answer: the emotion, SVG bar charts of the class probabilities and of the modality
contributions, the warnings, and the sampled frames with the face crops the model saw."""

from __future__ import annotations

import html
import json

_TEMPLATE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>emofuse — __TITLE__</title>
<style>
  :root { --ink:#1d2330; --muted:#667085; --line:#e4e7ec; --accent:#3f5bd8; --bg:#f6f7f9; --bad:#b42318; --warn:#b54708; }
  * { box-sizing: border-box; }
  body { margin:0; font:15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color:var(--ink); background:var(--bg); }
  header { padding:18px 28px; background:#fff; border-bottom:1px solid var(--line); display:flex; gap:16px; align-items:baseline; flex-wrap:wrap; }
  header h1 { margin:0; font-size:20px; } header .model { color:var(--muted); }
  .banner { margin:12px 28px 0; padding:8px 12px; border-radius:6px; background:#fffaeb; color:var(--warn); border:1px solid #fedf89; font-size:13px; }
  main { display:grid; grid-template-columns:minmax(300px, 380px) 1fr; gap:22px; padding:22px 28px; align-items:start; }
  @media (max-width: 860px) { main { grid-template-columns:1fr; } }
  .card { background:#fff; border:1px solid var(--line); border-radius:10px; padding:16px 18px; }
  .card h2 { font-size:14px; text-transform:uppercase; letter-spacing:.04em; color:var(--muted); margin:0 0 10px; }
  #drop { border:2px dashed #c3c9d5; border-radius:10px; padding:26px 14px; text-align:center; cursor:pointer; transition:.15s; }
  #drop.over { border-color:var(--accent); background:#eef1fd; }
  #drop strong { display:block; font-size:16px; margin-bottom:4px; }
  #drop .hint, .small { color:var(--muted); font-size:13px; }
  #chosen { margin-top:8px; font-size:13px; word-break:break-all; }
  label.field { display:block; margin-top:12px; font-size:13px; color:var(--muted); }
  textarea, input[type=file] { width:100%; margin-top:4px; font:inherit; }
  textarea { min-height:64px; padding:6px 8px; border:1px solid var(--line); border-radius:6px; resize:vertical; }
  details { margin-top:12px; font-size:13px; }
  button { margin-top:14px; width:100%; padding:10px; border:0; border-radius:8px; background:var(--accent); color:#fff; font:600 15px system-ui, sans-serif; cursor:pointer; }
  button:disabled { opacity:.55; cursor:progress; }
  #status { margin-top:10px; font-size:13px; min-height:18px; color:var(--muted); }
  #error { display:none; margin-top:10px; padding:10px 12px; border-radius:8px; background:#fef3f2; border:1px solid #fecdca; color:var(--bad); font-size:14px; white-space:pre-wrap; }
  #result { display:none; }
  .top { display:flex; gap:18px; align-items:center; margin-bottom:14px; flex-wrap:wrap; }
  #label { font-size:34px; font-weight:700; text-transform:capitalize; }
  #confidence { color:var(--muted); }
  .charts { display:grid; grid-template-columns:1fr 1fr; gap:18px; }
  @media (max-width: 1100px) { .charts { grid-template-columns:1fr; } }
  svg text { font:13px system-ui, sans-serif; fill:var(--ink); }
  svg .value { fill:var(--muted); }
  #warnings { margin:12px 0 0; padding-left:18px; color:var(--warn); font-size:13px; }
  #faces { display:flex; flex-wrap:wrap; gap:10px; }
  #faces figure { margin:0; text-align:center; font-size:12px; color:var(--muted); }
  #faces img { width:96px; height:96px; border-radius:6px; border:3px solid #12b76a; display:block; }
  #faces figure.noface img { border:3px dashed #98a2b3; opacity:.6; }
  #timings { margin-top:10px; }
</style>
</head>
<body>
<header><h1>emofuse</h1><span class="model">model <b id="model-name">__TITLE__</b> · classes: __CLASSES__</span></header>
__BANNER__
<main>
  <section class="card" aria-label="input">
    <h2>Clip</h2>
    <div id="drop" tabindex="0" role="button" aria-label="choose or drop a clip">
      <strong>Drop a video clip here</strong>
      <span class="hint">or click to choose (mp4, mkv, avi, webm; up to __LIMIT__)</span>
      <div id="chosen"></div>
    </div>
    <input id="file" type="file" accept="video/*,audio/*,.mkv,.avi" hidden>
    <details id="alt">
      <summary>…or an audio file plus a face image</summary>
      <label class="field">audio <input id="audio" type="file" accept="audio/*,video/*"></label>
      <label class="field">image <input id="image" type="file" accept="image/*"></label>
    </details>
    <label class="field">transcript (optional)
      <textarea id="text" placeholder="What is said in the clip"></textarea></label>
    <button id="submit" type="button">Predict</button>
    <div id="status" role="status"></div>
    <div id="error" role="alert"></div>
  </section>
  <section id="result" class="card" aria-live="polite">
    <div class="top"><div id="label"></div><div id="confidence"></div></div>
    <div class="charts">
      <div><h2>Class probabilities</h2><svg id="probs" role="img" aria-label="class probabilities"></svg></div>
      <div><h2>Modality contributions</h2><svg id="weights" role="img" aria-label="modality contributions"></svg><div id="noweights" class="small"></div></div>
    </div>
    <ul id="warnings"></ul>
    <p id="heard" class="small"></p>
    <h2 style="margin-top:18px">Frames <span id="facecount" class="small"></span></h2>
    <div id="faces"></div>
    <div id="timings" class="small"></div>
  </section>
</main>
<script>
const CONFIG = __CONFIG__;
const $ = (id) => document.getElementById(id);
const COLORS = {neutral:"#98a2b3", angry:"#d92d20", anger:"#d92d20", happy:"#f79009", joy:"#f79009", sad:"#2e90fa", sadness:"#2e90fa",
  worried:"#7a5af8", fear:"#7a5af8", fearful:"#7a5af8", surprise:"#12b76a", surprised:"#12b76a", disgust:"#667085", calm:"#06aed4"};
const MOD_COLORS = {audio:"#ee46bc", text:"#3f5bd8", video:"#f79009"};
let chosen = null;

function pick(file) {
  chosen = file;
  $("chosen").textContent = file ? `${file.name} (${(file.size / 1024).toFixed(0)} KB)` : "";
}
$("drop").addEventListener("click", () => $("file").click());
$("drop").addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") $("file").click(); });
$("file").addEventListener("change", () => pick($("file").files[0] || null));
["dragenter", "dragover"].forEach((t) => $("drop").addEventListener(t, (e) => { e.preventDefault(); $("drop").classList.add("over"); }));
["dragleave", "drop"].forEach((t) => $("drop").addEventListener(t, (e) => { e.preventDefault(); $("drop").classList.remove("over"); }));
$("drop").addEventListener("drop", (e) => { const f = e.dataTransfer.files[0]; if (f) { pick(f); predict(); } });
$("submit").addEventListener("click", predict);

function svgEl(name, attrs, text) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

// Horizontal bars: one row per (name, value in [0, 1]); `strong` is the highlighted row.
function bars(svg, rows, colour, strong) {
  svg.replaceChildren();
  const rowH = 26, labelW = 92, valueW = 52, width = 380, barW = width - labelW - valueW;
  svg.setAttribute("viewBox", `0 0 ${width} ${rows.length * rowH + 4}`);
  svg.setAttribute("width", "100%");
  rows.forEach(([name, v, note], i) => {
    const y = i * rowH + 2, g = svgEl("g", {"data-name": name, "data-value": v.toFixed(4)});
    g.appendChild(svgEl("text", {x: labelW - 8, y: y + 17, "text-anchor": "end", "font-weight": name === strong ? 700 : 400}, name));
    g.appendChild(svgEl("rect", {x: labelW, y: y + 4, width: barW, height: rowH - 8, rx: 3, fill: "#f2f4f7"}));
    g.appendChild(svgEl("rect", {class: "bar", x: labelW, y: y + 4, width: Math.max(0, v) * barW, height: rowH - 8, rx: 3,
      fill: colour(name), opacity: name === strong || strong === undefined ? 1 : 0.55}));
    g.appendChild(svgEl("text", {class: "value", x: width - 4, y: y + 17, "text-anchor": "end"}, note || `${(100 * v).toFixed(1)}%`));
    svg.appendChild(g);
  });
}

// An error replaces an earlier result, so that a result on screen always belongs to the last upload.
function showError(msg) { $("error").textContent = msg; $("error").style.display = "block"; $("result").style.display = "none"; }

async function predict() {
  const form = new FormData(), audio = $("audio").files[0], image = $("image").files[0];
  if (chosen) form.append("file", chosen);
  else if (audio || image) { if (audio) form.append("audio", audio); if (image) form.append("image", image); }
  else { showError("Choose or drop a clip first."); return; }
  const text = $("text").value.trim();
  if (text) form.append("text", text);
  $("error").style.display = "none";
  $("submit").disabled = true;
  $("status").textContent = "Analysing…";
  const t0 = performance.now();
  try {
    const r = await fetch("predict?frames=true", {method: "POST", body: form});
    let body;
    try { body = await r.json(); } catch { body = {detail: `${r.status} ${r.statusText}`}; }
    if (!r.ok) {
      const d = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
      showError(`${r.status}: ${d}`);
      $("status").textContent = "";
      return;
    }
    render(body);
    $("status").textContent = `Done in ${((performance.now() - t0) / 1000).toFixed(2)} s.`;
  } catch (e) {
    showError(`The server did not answer: ${e}`);
    $("status").textContent = "";
  } finally {
    $("submit").disabled = false;
  }
}

function render(p) {
  $("result").style.display = "block";
  $("label").textContent = p.label;
  $("label").style.color = COLORS[p.label] || "var(--ink)";
  $("confidence").textContent = `${(100 * p.probabilities[p.label]).toFixed(1)}% · ${p.name}`;
  bars($("probs"), CONFIG.classes.map((c) => [c, p.probabilities[c] ?? 0]), (c) => COLORS[c] || "#3f5bd8", p.label);
  const mods = Object.keys(p.modalities).sort();
  if (p.weights) {
    $("noweights").textContent = p.selected ? `selected: ${p.selected.join(", ")}` : "";
    const rows = Object.entries(p.weights).map(([k, w]) => {
      const m = k.split(":")[0], used = (p.modalities[m] || {}).used !== false;
      return [k, w, used ? undefined : "absent"];
    });
    for (const m of mods) if (!rows.some(([k]) => k.split(":")[0] === m)) rows.push([m, 0, "absent"]);
    bars($("weights"), rows, (k) => MOD_COLORS[k.split(":")[0]] || "#3f5bd8");
  } else {
    $("weights").replaceChildren();
    $("noweights").textContent = "This model gives no per-modality weights; used: " +
      mods.filter((m) => p.modalities[m].used).join(", ");
  }
  $("warnings").replaceChildren(...p.warnings.map((w) => Object.assign(document.createElement("li"), {textContent: w})));
  const heard = p.modalities.text || {};
  $("heard").textContent = heard.transcript ? `Words read (${heard.source}): “${heard.transcript}”` : "";
  const faces = p.faces.frames;
  $("facecount").textContent = faces.length ? `— a face in ${p.faces.found} of ${p.faces.sampled} sampled` : "— no video";
  $("faces").replaceChildren(...faces.map((f) => {
    const fig = document.createElement("figure");
    fig.className = f.found ? "face" : "noface";
    const img = Object.assign(document.createElement("img"), {src: f.image || "", alt: f.found ? `face at ${f.time}s` : `no face at ${f.time}s`});
    const cap = Object.assign(document.createElement("figcaption"), {textContent: `${f.time.toFixed(2)} s ${f.found ? "✓ face" : "✗ no face"}`});
    fig.append(img, cap);
    return fig;
  }));
  const t = p.timings_ms;
  $("timings").textContent = `server: decode ${t.decode} ms · encode ${t.encode} ms · model ${t.model} ms`;
}
</script>
</body>
</html>
"""


def page_html(model_name: str, classes: list[str], max_bytes: int, synthetic: bool = False) -> str:
    limit = f"{max_bytes / 2**20:.0f} MB" if max_bytes >= 2**20 else f"{max_bytes // 1024} KB"
    banner = ('<div class="banner">This model was trained on the SYNTHETIC demo corpus: it recognises drawn faces '
              "and synthesised voices, not real human emotion.</div>") if synthetic else ""
    config = json.dumps({"model": model_name, "classes": classes, "max_bytes": max_bytes}).replace("</", "<\\/")
    return (_TEMPLATE.replace("__TITLE__", html.escape(model_name))
            .replace("__CLASSES__", html.escape(", ".join(classes)))
            .replace("__LIMIT__", limit)
            .replace("__BANNER__", banner)
            .replace("__CONFIG__", config))
