// rl4text label: posts the annotator's choice as same-origin JSON, then loads the next item.
// Texts are never inserted as HTML here: the server renders (and escapes) them.
"use strict";
(function () {
  const app = document.getElementById("app");
  if (!app) return;
  const item = app.dataset.item, annotator = app.dataset.annotator, token = app.dataset.token;
  const n = parseInt(app.dataset.n, 10);
  const errorBox = document.getElementById("error");
  let busy = false;

  function showError(message) { if (errorBox) errorBox.textContent = message; }

  async function post(path, body) {
    if (busy) return;
    busy = true;
    const headers = { "Content-Type": "application/json" };
    if (token) headers["X-Label-Token"] = token;
    try {
      const response = await fetch(path, { method: "POST", headers: headers, body: JSON.stringify(body), credentials: "same-origin" });
      const data = await response.json();
      if (!response.ok) { showError(data.error || ("error " + response.status)); busy = false; return; }
      window.location.reload();
    } catch (e) { showError(String(e)); busy = false; }
  }

  function comment() { const c = document.getElementById("comment"); return c ? c.value : ""; }
  function order(first) { const rest = []; for (let i = 0; i < n; i++) if (i !== first) rest.push(i); return [first].concat(rest); }
  function choose(pos) { post("/api/judgments", { item: item, annotator: annotator, order: order(pos), tie: false, comment: comment() }); }
  function tie() { post("/api/judgments", { item: item, annotator: annotator, order: order(0), tie: true, comment: comment() }); }
  function skip() { post("/api/skip", { item: item, annotator: annotator }); }
  function undo() { post("/api/undo", { annotator: annotator }); }
  function submitRanking() {
    const inputs = Array.from(document.querySelectorAll("input.rank"));
    const ranks = inputs.map(function (el) { return parseInt(el.value, 10); });
    const sorted = ranks.slice().sort(function (a, b) { return a - b; });
    for (let i = 0; i < sorted.length; i++) {
      if (sorted[i] !== i + 1) { showError("give each candidate a different rank from 1 to " + n); return; }
    }
    const best = inputs.map(function (el, i) { return [ranks[i], parseInt(el.dataset.pos, 10)]; })
      .sort(function (a, b) { return a[0] - b[0]; }).map(function (x) { return x[1]; });
    post("/api/judgments", { item: item, annotator: annotator, order: best, tie: false, comment: comment() });
  }

  document.querySelectorAll("button.choose").forEach(function (b) {
    b.addEventListener("click", function () { choose(parseInt(b.dataset.pos, 10)); });
  });
  const bind = function (id, fn) { const el = document.getElementById(id); if (el) el.addEventListener("click", fn); };
  bind("tie", tie); bind("skip", skip); bind("undo", undo); bind("submit-ranking", submitRanking);

  document.addEventListener("keydown", function (e) {
    const tag = (e.target && e.target.tagName) || "";
    if (tag === "TEXTAREA" || (tag === "INPUT" && e.key !== "Enter")) return;
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (!item) { if (e.key === "u") undo(); return; }
    if (app.dataset.mode === "pairwise") {
      if (e.key === "1" || e.key === "a" || e.key === "ArrowLeft") choose(0);
      else if (e.key === "2" || e.key === "b" || e.key === "ArrowRight") choose(1);
    } else if (e.key === "Enter") { e.preventDefault(); submitRanking(); }
    if (e.key === "t") tie();
    else if (e.key === "s") skip();
    else if (e.key === "u") undo();
  });
})();
