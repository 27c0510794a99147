"""A self-contained, interactive HTML view of attention: one file, no network, no CDN.

bertviz's views load their script from a CDN, so offline the page is blank. This page carries
its data (weights in thousandths, as JSON in a ``<script type="application/json">``), its style
and its script inline, and a Content-Security-Policy that forbids every fetch (``default-src
'none'``): it renders the same on a laptop in a plane. Tokens are inserted with ``textContent``
(never parsed as HTML). When the script has drawn the page it sets ``data-op-ready="1"`` on
``<html>`` and fills ``#op-status``: what a headless browser test checks.

Views: *lines* (queries on the left, keys on the right, one line per weight, opacity = weight;
hover a token to see only its row or column), *matrix* (the T × T heatmap, hover for values),
an overview of every layer × head as thumbnails (click to select), and the head statistics table.
"""

from __future__ import annotations

import html
import json
from typing import Any

import numpy as np

CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:"

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1d2330;background:#fafbfc}
header{padding:14px 22px;background:#1d2330;color:#fff}header h1{font-size:18px;margin:0}
header p{margin:4px 0 0;color:#c7cdd8;font-size:13px}main{padding:14px 22px}
.controls{display:flex;gap:18px;align-items:center;flex-wrap:wrap;margin-bottom:10px}
select,button{font:inherit;padding:2px 6px}.panel{background:#fff;border:1px solid #dde1e8;border-radius:6px;
padding:10px;margin-bottom:14px;overflow:auto}.tok{font:12px ui-monospace,Menlo,Consolas,monospace;cursor:default}
.tok.hi{fill:#c0392b;font-weight:bold}#grid{display:grid;gap:6px}.thumb{border:2px solid transparent;cursor:pointer;
text-align:center;font-size:11px;color:#555}.thumb.sel{border-color:#c0392b}.thumb canvas{display:block;
image-rendering:pixelated;width:72px;height:72px}table{border-collapse:collapse;font-size:12px}
td,th{padding:2px 8px;border-bottom:1px solid #eee;text-align:right}tr.sel td{background:#fdecea}
#tip{position:fixed;pointer-events:none;background:#1d2330;color:#fff;padding:2px 6px;border-radius:3px;
font-size:12px;display:none}.note{color:#666;font-size:12px}
"""

SCRIPT = r"""
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("op-data").textContent);
  var T = D.tokens.length, L = D.n_layer, H = D.n_head;
  var state = {layer: 0, head: -1, view: "lines"};
  var $ = function (id) { return document.getElementById(id); };
  var SVG = "http://www.w3.org/2000/svg";
  function weights(layer, head) {  // Float64Array T*T, head -1 = mean of the heads
    var out = new Float64Array(T * T), h, i;
    var heads = head < 0 ? D.weights[layer] : [D.weights[layer][head]];
    for (h = 0; h < heads.length; h++) for (i = 0; i < T * T; i++) out[i] += heads[h][i] / 1000 / heads.length;
    return out;
  }
  function shade(w) {  // white -> deep blue
    var r = Math.round(255 - 247 * w), g = Math.round(255 - 207 * w), b = Math.round(255 - 148 * w);
    return "rgb(" + r + "," + g + "," + b + ")";
  }
  function paint(canvas, w) {
    var ctx = canvas.getContext("2d"), img = ctx.createImageData(T, T), i, v;
    for (i = 0; i < T * T; i++) {
      v = Math.min(1, Math.max(0, w[i]));
      img.data[4 * i] = 255 - 247 * v; img.data[4 * i + 1] = 255 - 207 * v;
      img.data[4 * i + 2] = 255 - 148 * v; img.data[4 * i + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
  }
  function el(tag, attrs, text) {
    var e = document.createElement(tag), k;
    for (k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function svgEl(tag, attrs, text) {
    var e = document.createElementNS(SVG, tag), k;
    for (k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function drawLines(w) {
    var box = $("view"), rowH = 18, width = 520, height = T * rowH + 34, svg, lines = [], i, j, line;
    box.textContent = "";
    svg = svgEl("svg", {width: width, height: height});
    var left = [], right = [];
    for (i = 0; i < T; i++) {
      left.push(svgEl("text", {x: 150, y: i * rowH + 16, "text-anchor": "end", "class": "tok"}, D.tokens[i]));
      right.push(svgEl("text", {x: 370, y: i * rowH + 16, "class": "tok"}, D.tokens[i]));
    }
    for (i = 0; i < T; i++) for (j = 0; j < T; j++) {
      if (w[i * T + j] < 0.01) continue;
      line = svgEl("line", {x1: 156, y1: i * rowH + 12, x2: 364, y2: j * rowH + 12, stroke: "#2c6fbb",
                            "stroke-width": 2, "stroke-opacity": w[i * T + j].toFixed(3)});
      line.dataset.q = i; line.dataset.k = j;
      lines.push(line); svg.appendChild(line);
    }
    function focus(side, idx) {
      lines.forEach(function (ln) {
        var on = idx < 0 || Number(ln.dataset[side]) === idx;
        ln.style.display = on ? "" : "none";
      });
      left.forEach(function (t, k) { t.classList.toggle("hi", side === "q" && k === idx); });
      right.forEach(function (t, k) { t.classList.toggle("hi", side === "k" && k === idx); });
    }
    left.forEach(function (t, k) {
      t.addEventListener("mouseenter", function () { focus("q", k); });
      t.addEventListener("mouseleave", function () { focus("q", -1); });
      svg.appendChild(t);
    });
    right.forEach(function (t, k) {
      t.addEventListener("mouseenter", function () { focus("k", k); });
      t.addEventListener("mouseleave", function () { focus("k", -1); });
      svg.appendChild(t);
    });
    // labels a row below the last token, their descenders inside the box (y is the baseline)
    svg.appendChild(svgEl("text", {x: 150, y: T * rowH + 24, "text-anchor": "end", "class": "note"}, "query (from)"));
    svg.appendChild(svgEl("text", {x: 370, y: T * rowH + 24, "class": "note"}, "key (to)"));
    box.appendChild(svg);
  }
  function drawMatrix(w) {
    var box = $("view"), cell = Math.max(6, Math.min(22, Math.floor(560 / T))), canvas;
    box.textContent = "";
    canvas = el("canvas", {width: T, height: T});
    canvas.style.width = canvas.style.height = (T * cell) + "px";
    canvas.style.imageRendering = "pixelated";
    paint(canvas, w);
    canvas.addEventListener("mousemove", function (ev) {
      var r = canvas.getBoundingClientRect(), q = Math.floor((ev.clientY - r.top) / cell),
          k = Math.floor((ev.clientX - r.left) / cell), tip = $("tip");
      if (q < 0 || k < 0 || q >= T || k >= T) return;
      tip.textContent = D.tokens[q] + " \u2192 " + D.tokens[k] + ": " + w[q * T + k].toFixed(3);
      tip.style.left = (ev.clientX + 12) + "px"; tip.style.top = (ev.clientY + 12) + "px";
      tip.style.display = "block";
    });
    canvas.addEventListener("mouseleave", function () { $("tip").style.display = "none"; });
    box.appendChild(canvas);
    box.appendChild(el("p", {"class": "note"}, "rows: query (from), columns: key (to); hover for a weight"));
  }
  function drawGrid() {
    var grid = $("grid"), l, h, div, canvas;
    grid.textContent = "";
    grid.style.gridTemplateColumns = "repeat(" + (H + 1) + ", 80px)";
    for (l = 0; l < L; l++) for (h = -1; h < H; h++) {
      div = el("div", {"class": "thumb" + (l === state.layer && h === state.head ? " sel" : "")});
      canvas = el("canvas", {width: T, height: T});
      paint(canvas, weights(l, h));
      div.appendChild(canvas);
      div.appendChild(el("span", {}, "L" + l + (h < 0 ? " mean" : " H" + h)));
      div.addEventListener("click", (function (ll, hh) {
        return function () { state.layer = ll; state.head = hh; sync(); };
      })(l, h));
      grid.appendChild(div);
    }
  }
  function drawStats() {
    var box = $("stats"), table, head, cols, rows;
    box.textContent = "";
    if (!D.stats.length) { box.appendChild(el("p", {"class": "note"}, "no head statistics")); return; }
    cols = Object.keys(D.stats[0]);
    table = el("table"); head = el("tr");
    cols.forEach(function (c) { head.appendChild(el("th", {}, c.replace(/_/g, " "))); });
    table.appendChild(head);
    D.stats.forEach(function (s) {
      var tr = el("tr", {"class": s.layer === state.layer && s.head === state.head ? "sel" : ""});
      cols.forEach(function (c) {
        var v = s[c];
        tr.appendChild(el("td", {}, typeof v === "number" && !Number.isInteger(v) ? v.toFixed(3) : String(v)));
      });
      table.appendChild(tr);
    });
    box.appendChild(table);
  }
  function sync() {
    $("layer").value = String(state.layer); $("head").value = String(state.head);
    var w = weights(state.layer, state.head);
    if (state.view === "lines") drawLines(w); else drawMatrix(w);
    drawGrid(); drawStats();
  }
  var i, layerSel = $("layer"), headSel = $("head");
  for (i = 0; i < L; i++) layerSel.appendChild(el("option", {value: String(i)}, "layer " + i));
  headSel.appendChild(el("option", {value: "-1"}, "mean of heads"));
  for (i = 0; i < H; i++) headSel.appendChild(el("option", {value: String(i)}, "head " + i));
  state.head = H === 1 ? 0 : -1;
  layerSel.addEventListener("change", function () { state.layer = Number(layerSel.value); sync(); });
  headSel.addEventListener("change", function () { state.head = Number(headSel.value); sync(); });
  Array.prototype.forEach.call(document.querySelectorAll("input[name=view]"), function (r) {
    r.addEventListener("change", function () { state.view = r.value; sync(); });
  });
  sync();
  $("op-status").textContent = "rendered " + L + " layers \u00d7 " + H + " heads, " + T + " tokens";
  document.documentElement.setAttribute("data-op-ready", "1");
})();
"""


def _json_for_script(doc: Any) -> str:
    """JSON safe inside a <script> element: no '<', '>' or '&' can end it early."""
    text = json.dumps(doc, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def attention_page(tokens: list[str], weights: np.ndarray, title: str, subtitle: str = "",
                   stats: list[dict[str, Any]] | None = None) -> str:
    """The HTML of the view for weights (L, H, T, T) over ``tokens`` (T display strings)."""
    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim != 4 or weights.shape[2] != weights.shape[3] or weights.shape[2] != len(tokens):
        raise ValueError(f"weights must be (L, H, T, T) with T = {len(tokens)} tokens, got {weights.shape}")
    permille = np.rint(np.clip(weights, 0.0, 1.0) * 1000).astype(np.int64)
    clean = [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in s.items()} for s in stats or []]
    doc = {"tokens": [str(t) for t in tokens], "n_layer": int(weights.shape[0]), "n_head": int(weights.shape[1]),
           "weights": [[permille[i, h].ravel().tolist() for h in range(weights.shape[1])]
                       for i in range(weights.shape[0])], "stats": clean}
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title><style>{STYLE}</style></head>
<body><header><h1>{html.escape(title)}</h1><p>{html.escape(subtitle)}</p></header>
<main>
<noscript><p>This view needs JavaScript (inline; nothing is fetched).</p></noscript>
<div class="controls"><label>layer <select id="layer"></select></label>
<label>head <select id="head"></select></label>
<span><label><input type="radio" name="view" value="lines" checked> lines</label>
<label><input type="radio" name="view" value="matrix"> matrix</label></span></div>
<div class="panel" id="view"></div>
<h2>Every layer and head</h2><div class="panel"><div id="grid"></div></div>
<h2>Head statistics</h2><div class="panel" id="stats"></div>
<p class="note" id="op-status">not rendered (is JavaScript off?)</p>
<div id="tip"></div>
</main>
<script type="application/json" id="op-data">{_json_for_script(doc)}</script>
<script>{SCRIPT}</script>
</body></html>
"""
