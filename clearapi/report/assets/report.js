/* clearapi report: the row table and the side-by-side view.
 *
 * Rows arrive as columns in <script type="application/json" id="report-data">. Every
 * piece of dataset text is written with textContent (never innerHTML), so a row holding
 * markup shows the markup as text. Only one page of the table is in the DOM at a time,
 * which keeps 100,000 rows responsive; sorting works on an index array, filtering walks
 * that array once.
 */
(function () {
  "use strict";

  var D = JSON.parse(document.getElementById("report-data").textContent);
  var N = D.n;
  var ACTIONS = D.actions;
  var $ = function (id) { return document.getElementById(id); };

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function actionName(code) { return code >= 0 ? ACTIONS[code] : "no action"; }
  function reasonOf(i) { return D.reason[i] >= 0 ? D.reasons[D.reason[i]] : ""; }
  function fmt(v) { return v === null || v === undefined ? "n/a" : v.toFixed(3); }
  function int(n) { return n.toLocaleString("en-US"); }

  // ---- columns -------------------------------------------------------------
  var columns = [
    { key: "line", label: "line", num: true, value: function (i) { return D.line[i]; } },
    { key: "id", label: "id", num: false, value: function (i) { return D.id[i]; } },
    { key: "conf", label: "confidence", num: true, value: function (i) { return D.conf[i]; } }
  ];
  D.signals.forEach(function (name, k) {
    columns.push({ key: "sig" + k, label: name.replace(/_/g, " "), num: true, signal: true,
                   value: function (i) { return D.sig[k][i]; } });
  });
  columns.push({ key: "act", label: "action", num: true, value: function (i) { return D.act[i] >= 0 ? D.act[i] : null; } });
  columns.push({ key: "reason", label: "reason", num: false, value: reasonOf });
  columns.push({ key: "prompt", label: "prompt", num: false, value: function (i) { return D.p[i]; } });

  // ---- state ---------------------------------------------------------------
  var state = { sort: "line", dir: 1, query: "", action: "", bin: null, bins: 20, page: 0, size: 50, open: -1 };
  var sorted = null;   // all rows in the current sort order
  var view = [];       // the filtered subset, in sort order
  var haystack = null; // lower-cased search text per row, built on first search

  function sortRows() {
    var col = columns.filter(function (c) { return c.key === state.sort; })[0];
    var dir = state.dir;
    var idx = new Array(N);
    for (var i = 0; i < N; i++) idx[i] = i;
    var keys = new Array(N);
    for (var j = 0; j < N; j++) {
      var v = col.value(j);
      keys[j] = (v === null || v === undefined || v === "") ? null : (col.num ? v : String(v).toLowerCase());
    }
    idx.sort(function (a, b) {
      var x = keys[a], y = keys[b];
      if (x === null || y === null) {
        if (x === y) return D.line[a] - D.line[b];
        return x === null ? 1 : -1;  // missing values last in either direction
      }
      if (x < y) return -dir;
      if (x > y) return dir;
      return D.line[a] - D.line[b];
    });
    sorted = idx;
  }

  function buildHaystack() {
    haystack = new Array(N);
    for (var i = 0; i < N; i++) {
      var parts = [D.id[i], reasonOf(i), D.p[i], D.r[i]];
      var d = D.details[i];
      if (d) {
        parts.push(d.p || "", d.r || "", d.c || "");
        if (d.d) for (var k = 0; k < d.d.length; k++) parts.push(d.d[k][1]);
      }
      haystack[i] = parts.join("\n").toLowerCase();
    }
  }

  function binOf(v) { return Math.min(state.bins - 1, Math.max(0, Math.floor(v * state.bins))); }

  function filterRows() {
    var terms = state.query.toLowerCase().split(/\s+/).filter(Boolean);
    if (terms.length && !haystack) buildHaystack();
    var act = state.action === "" ? null : Number(state.action);
    var out = [];
    for (var n = 0; n < sorted.length; n++) {
      var i = sorted[n];
      if (act !== null && D.act[i] !== act) continue;
      if (state.bin !== null && (D.conf[i] === null || binOf(D.conf[i]) !== state.bin)) continue;
      if (terms.length) {
        var h = haystack[i], ok = true;
        for (var t = 0; t < terms.length; t++) if (h.indexOf(terms[t]) < 0) { ok = false; break; }
        if (!ok) continue;
      }
      out.push(i);
    }
    view = out;
  }

  // ---- table ---------------------------------------------------------------
  function renderHead() {
    var head = $("rows-head");
    head.textContent = "";
    columns.forEach(function (c) {
      var th = el("th", (c.num ? "num" : "") + (c.signal ? " sig" : ""));
      th.title = c.signal ? D.signals[Number(c.key.slice(3))] : c.label;
      th.dataset.key = c.key;
      th.setAttribute("aria-sort", c.key === state.sort ? (state.dir > 0 ? "ascending" : "descending") : "none");
      var b = el("button", "sort", c.label);
      b.type = "button";
      b.addEventListener("click", function () {
        if (state.sort === c.key) state.dir = -state.dir;
        else { state.sort = c.key; state.dir = 1; }
        state.page = 0;
        sortRows(); filterRows(); renderHead(); renderBody();
      });
      th.appendChild(b);
      head.appendChild(th);
    });
  }

  function confCell(v) {
    var td = el("td", "num conf");
    if (v === null) { td.textContent = "n/a"; return td; }
    var bar = el("span", "cbar");
    bar.style.width = Math.round(v * 100) + "%";
    var wrap = el("span", "cwrap");
    wrap.appendChild(bar);
    td.appendChild(wrap);
    td.appendChild(el("span", "cval", v.toFixed(3)));
    return td;
  }

  function renderBody() {
    var body = $("rows-body");
    body.textContent = "";
    var pages = Math.max(1, Math.ceil(view.length / state.size));
    if (state.page >= pages) state.page = pages - 1;
    var start = state.page * state.size, end = Math.min(view.length, start + state.size);
    var frag = document.createDocumentFragment();
    for (var n = start; n < end; n++) {
      var i = view[n];
      var tr = el("tr", i === state.open ? "selected" : "");
      tr.dataset.i = String(i);
      tr.dataset.line = String(D.line[i]);
      tr.tabIndex = 0;
      tr.appendChild(el("td", "num", D.line[i]));
      tr.appendChild(el("td", "id", D.id[i]));
      tr.appendChild(confCell(D.conf[i]));
      for (var k = 0; k < D.signals.length; k++) tr.appendChild(el("td", "num", fmt(D.sig[k][i])));
      var at = el("td", "act");
      at.appendChild(el("span", "pill a" + (D.act[i] >= 0 ? D.act[i] : 3), actionName(D.act[i])));
      tr.appendChild(at);
      var rc = el("td", "reason", reasonOf(i));
      rc.title = reasonOf(i);
      tr.appendChild(rc);
      tr.appendChild(el("td", "text", D.p[i]));
      frag.appendChild(tr);
    }
    body.appendChild(frag);
    placeDetail();
    $("row-count").textContent = (view.length === N ? int(N) : int(view.length) + " of " + int(N)) +
      (D.total > N ? " (sample of " + int(D.total) + ")" : "");
    $("page-info").textContent = view.length
      ? "rows " + int(start + 1) + "–" + int(end) + " of " + int(view.length) + " · page " + (state.page + 1) + " of " + int(pages)
      : "no rows match";
    $("prev").disabled = state.page <= 0;
    $("next").disabled = state.page >= pages - 1;
  }

  function refresh() { filterRows(); state.page = 0; renderBody(); }

  // ---- detail view ---------------------------------------------------------
  // The side-by-side view opens as an extra table row under the row it explains, and
  // follows that row through re-renders while it is on the current page.
  // Held by reference: while the panel sits in a detached row, getElementById cannot see it.
  var detailSec = $("detail");
  var dq = function (id) { return detailSec.querySelector("#" + id); };
  var detailRow = el("tr", "detail-row");
  var detailCell = el("td");
  detailCell.colSpan = columns.length;
  detailRow.appendChild(detailCell);
  // Where the panel waits while closed, so it stays in the document.
  var detailHome = detailSec.parentNode, detailAnchor = detailSec.nextSibling;

  function placeDetail() {
    var sec = detailSec;
    var tr = state.open >= 0 ? $("rows-body").querySelector('tr[data-i="' + state.open + '"]') : null;
    var rows = $("rows-body").children;
    for (var r = 0; r < rows.length; r++) rows[r].classList.toggle("selected", rows[r] === tr);
    if (!tr) {
      sec.hidden = true;
      if (sec.parentNode !== detailHome) detailHome.insertBefore(sec, detailAnchor);
      if (detailRow.parentNode) detailRow.parentNode.removeChild(detailRow);
      return;
    }
    if (sec.parentNode !== detailCell) detailCell.appendChild(sec);
    tr.parentNode.insertBefore(detailRow, tr.nextSibling);
    sec.hidden = false;
  }

  function fact(dl, k, v) {
    dl.appendChild(el("dt", "", k));
    dl.appendChild(el("dd", "", v));
  }

  function fill(pre, text, cut) {
    pre.textContent = "";
    pre.classList.toggle("empty", !text);
    if (!text) { pre.textContent = "(not recorded)"; return; }
    pre.appendChild(document.createTextNode(text));
    if (cut) pre.appendChild(el("span", "cut", " … (truncated)"));
  }

  function fillDiff(pre, ops, side) {
    pre.textContent = "";
    pre.classList.remove("empty");
    for (var k = 0; k < ops.length; k++) {
      var op = ops[k][0], text = ops[k][1];
      if (op === 0) pre.appendChild(document.createTextNode(text));
      else if (op === -1 && side < 0) pre.appendChild(el("del", "", text));
      else if (op === 1 && side > 0) pre.appendChild(el("ins", "", text));
    }
  }

  function noCorrection(pre, i) {
    var what = D.act[i] === 2 ? "dropped" : D.act[i] === 0 ? "kept as is" : D.act[i] === 1 ? "corrected" : "not decided";
    pre.textContent = "";
    pre.classList.add("empty");
    pre.appendChild(el("span", "muted", D.act[i] === 1 ? "(correction not embedded)" : "No correction: the row was " + what + "."));
  }

  function openDetail(i) {
    state.open = i;
    var d = D.details[i] || null;
    var x = D.x[i];
    dq("detail-title").textContent = "Input line " + D.line[i] + " · " + D.id[i];
    var facts = dq("detail-facts");
    facts.textContent = "";
    fact(facts, "confidence", fmt(D.conf[i]));
    fact(facts, "action", actionName(D.act[i]));
    fact(facts, "reason", reasonOf(i) || "—");
    D.signals.forEach(function (name, k) {
      var m = d && d.m && d.m[name] ? " (" + d.m[name] + ")" : "";
      fact(facts, name, fmt(D.sig[k][i]) + m);
    });
    if (d && d.cc !== undefined) fact(facts, "correction confidence", fmt(d.cc));
    if (d && d.j) d.j.forEach(function (v) { fact(facts, "judge " + v[0], v[1]); });
    if (d && d.f) Object.keys(d.f).forEach(function (k) {
      var v = d.f[k];
      fact(facts, k.replace(/_/g, " "), typeof v === "number" && !Number.isInteger(v) ? v.toFixed(4) : String(v));
    });
    var t = d && d.t ? d.t : 0;
    var note = "";
    if (d) {
      fill(dq("detail-prompt"), d.p, t & 1);
      if (d.d) {
        fillDiff(dq("detail-original"), d.d, -1);
        fillDiff(dq("detail-correction"), d.d, 1);
        dq("detail-correction-title").textContent = d.k || D.act[i] !== 1
          ? "Model's answer, not applied (changes marked)" : "Correction (changes marked)";
      } else {
        fill(dq("detail-original"), d.r, t & 2);
        fill(dq("detail-correction"), d.c, t & 4);
        dq("detail-correction-title").textContent = (d.k || D.act[i] !== 1) && d.c ? "Model's answer, not applied" : "Correction";
      }
      if (t) note = "Texts longer than the report's per-text limit are cut; scores.jsonl has them whole.";
    } else {
      // Short texts are complete in the previews; long ones were left out to keep the file small.
      fill(dq("detail-prompt"), D.p[i], x & 1);
      fill(dq("detail-original"), D.r[i], x & 2);
      noCorrection(dq("detail-correction"), i);
      dq("detail-correction-title").textContent = "Correction";
      if (x) note = "Only the start of these texts is embedded in this report (size budget); scores.jsonl has them whole.";
    }
    if (d && !d.d && (d.c === null || d.c === undefined)) noCorrection(dq("detail-correction"), i);
    dq("detail-note").textContent = note;
    detailSec.dataset.i = String(i);
    if ($("rows-body").querySelector('tr[data-i="' + i + '"]') === null) {
      // Opened from a link (#line=N) to a row on another page: go to its page.
      var at = view.indexOf(i);
      if (at >= 0) { state.page = Math.floor(at / state.size); renderBody(); }
    }
    placeDetail();
    if (history.replaceState) history.replaceState(null, "", "#line=" + D.line[i]);
    if (!detailSec.hidden) detailSec.scrollIntoView({ block: "nearest" });
  }

  function closeDetail() {
    var sel = document.querySelector("#rows-body tr.selected");
    state.open = -1;
    placeDetail();
    if (sel) sel.focus();
    if (history.replaceState) history.replaceState(null, "", location.pathname + location.search);
  }

  // ---- wiring --------------------------------------------------------------
  $("rows-body").addEventListener("click", function (ev) {
    var tr = ev.target.closest ? ev.target.closest("tr") : null;
    if (!tr || !tr.dataset.i) return;
    if (state.open === Number(tr.dataset.i)) closeDetail();
    else openDetail(Number(tr.dataset.i));
  });
  $("rows-body").addEventListener("keydown", function (ev) {
    var tr = ev.target.closest ? ev.target.closest("tr") : null;
    if (!tr || !tr.dataset.i || ev.target !== tr) return;
    if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); openDetail(Number(tr.dataset.i)); }
    else if (ev.key === "ArrowDown" && tr.nextElementSibling) { ev.preventDefault(); tr.nextElementSibling.focus(); }
    else if (ev.key === "ArrowUp" && tr.previousElementSibling) { ev.preventDefault(); tr.previousElementSibling.focus(); }
  });
  document.addEventListener("keydown", function (ev) {
    if (ev.key === "Escape" && !detailSec.hidden) closeDetail();
  });
  dq("detail-close").addEventListener("click", closeDetail);

  var timer = null;
  $("search").addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(function () { state.query = $("search").value; refresh(); }, 120);
  });
  $("search").addEventListener("keydown", function (ev) {
    if (ev.key === "Enter") { clearTimeout(timer); state.query = $("search").value; refresh(); }
  });
  $("action-filter").addEventListener("change", function () { state.action = $("action-filter").value; refresh(); });
  $("page-size").addEventListener("change", function () { state.size = Number($("page-size").value); state.page = 0; renderBody(); });
  $("prev").addEventListener("click", function () { state.page--; renderBody(); });
  $("next").addEventListener("click", function () { state.page++; renderBody(); });

  var chip = $("range-chip");
  var bars = document.querySelectorAll("#confidence-histogram g.bin");
  for (var b = 0; b < bars.length; b++) {
    bars[b].addEventListener("click", function () {
      var lo = Number(this.dataset.lo), hi = Number(this.dataset.hi);
      state.bins = Math.round(1 / (hi - lo));
      state.bin = Math.round(lo * state.bins);
      chip.textContent = "confidence " + lo.toFixed(2) + "–" + hi.toFixed(2) + " ✕";
      chip.hidden = false;
      refresh();
      $("rows").scrollIntoView({ block: "start" });
    });
  }
  chip.addEventListener("click", function () { state.bin = null; chip.hidden = true; refresh(); });

  sortRows();
  filterRows();
  renderHead();
  renderBody();
  var m = /^#line=(\d+)$/.exec(location.hash);
  if (m) {
    var want = Number(m[1]);
    for (var i = 0; i < N; i++) if (D.line[i] === want) { openDetail(i); break; }
  }
  document.body.dataset.ready = "1";
})();
