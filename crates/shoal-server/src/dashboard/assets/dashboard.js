// The shoal dashboard's pages. Plain DOM and canvas, no library, no network
// beyond this scheduler. Live pages follow /api/v1/updates (server-sent
// events, at most a few per second); a saved report sets window.SHOAL_REPORT
// and is drawn once from it.
(function () {
  "use strict";

  var WINDOW_S = 15;          // the task stream shows this many seconds
  var MAX_EVENTS = 5000;      // and keeps at most this many bars
  var page = document.body.dataset.page;
  var state = {
    status: null,
    events: [],
    next: 0,
    updates: 0,
    drawn: 0,
    errors: 0,
    report: window.SHOAL_REPORT || null,
  };
  // For tests and the curious: what the page has received and drawn.
  window.shoalDashboard = state;

  var PALETTE = ["#3b82f6", "#f59e0b", "#10b981", "#8b5cf6", "#ef4444", "#06b6d4",
                 "#84cc16", "#ec4899", "#f97316", "#6366f1", "#14b8a6", "#a855f7"];
  var colours = {};
  function colour(name) {
    if (!(name in colours)) {
      var h = 0;
      for (var i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) >>> 0;
      colours[name] = PALETTE[h % PALETTE.length];
    }
    return colours[name];
  }

  function $(id) { return document.getElementById(id); }
  function text(id, value) { var el = $(id); if (el) el.textContent = value; }
  function fmtInt(n) { return Math.round(n).toLocaleString("en-US"); }
  function fmtBytes(n) {
    var units = ["B", "KiB", "MiB", "GiB", "TiB"];
    var i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
  }
  function el(tag, cls, content) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (content !== undefined) e.textContent = content;
    return e;
  }

  // ----- status page -----

  function drawFigures(s) {
    var threads = 0;
    s.workers.forEach(function (w) { threads += w.nthreads; });
    text("n-workers", fmtInt(s.workers.length));
    text("n-threads", fmtInt(threads));
    text("rate", fmtInt(s.rate));
    text("n-processing", fmtInt(s.tasks.processing));
    text("n-memory", fmtInt(s.tasks.memory));
    text("n-completed", fmtInt(s.completed));
    text("n-erred", fmtInt(s.tasks.erred));
  }

  function drawProgress(s) {
    var box = $("progress");
    if (!box) return;
    var rows = s.prefixes.filter(function (p) {
      var c = p.states;
      return c.waiting + c.queued + c.processing + c.memory + c.erred > 0 || p.completed > 0;
    });
    box.textContent = "";
    if (rows.length === 0) {
      box.appendChild(el("div", "empty", "No tasks yet."));
      return;
    }
    rows.forEach(function (p) {
      var c = p.states;
      var total = c.waiting + c.queued + c.processing + c.memory + c.erred;
      var row = el("div", "prefix");
      row.dataset.prefix = p.name;
      row.appendChild(el("span", "name", p.name));
      var bar = el("div", "bar");
      ["memory", "processing", "queued", "waiting", "erred"].forEach(function (k) {
        if (c[k] > 0 && total > 0) {
          var part = el("span", k);
          part.style.width = (100 * c[k] / total) + "%";
          part.title = k + ": " + fmtInt(c[k]);
          bar.appendChild(part);
        }
      });
      row.appendChild(bar);
      row.appendChild(el("span", "counts",
        fmtInt(c.memory) + " in memory / " + fmtInt(total) + " held · " +
        fmtInt(p.completed) + " done" + (c.erred ? " · " + fmtInt(c.erred) + " erred" : "")));
      box.appendChild(row);
    });
  }

  function drawStream() {
    var canvas = $("stream");
    if (!canvas || !state.status) return;
    var now = state.report ? state.report.stop : state.status.time;
    var from = state.report ? state.report.start : now - WINDOW_S;
    var span = Math.max(now - from, 1e-3);
    var rows = {}, order = [];
    state.status.workers.forEach(function (w) { rows[w.address] = rows[w.address] || {}; });
    state.events.forEach(function (e) {
      var w = rows[e.worker] = rows[e.worker] || {};
      if (!(e.thread in w)) { w[e.thread] = 0; }
    });
    Object.keys(rows).sort().forEach(function (addr) {
      Object.keys(rows[addr]).sort(function (a, b) { return a - b; }).forEach(function (t) {
        rows[addr][t] = order.length;
        order.push(addr + " #" + t);
      });
    });
    var rowH = Math.max(6, Math.min(24, Math.floor(360 / Math.max(order.length, 1))));
    var width = canvas.clientWidth || 800;
    var height = Math.max(60, order.length * rowH + 20);
    var ratio = window.devicePixelRatio || 1;
    canvas.width = width * ratio;
    canvas.height = height * ratio;
    canvas.style.height = height + "px";
    var ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    ctx.fillStyle = "#6b7280";
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillText(state.report ? span.toFixed(2) + " s" : "-" + WINDOW_S + " s", 4, height - 4);
    ctx.fillText(state.report ? "" : "now", width - 28, height - 4);
    var drawn = 0, names = {};
    state.events.forEach(function (e) {
      if (e.stop < from) return;
      var row = rows[e.worker] && rows[e.worker][e.thread];
      if (row === undefined) return;
      var x0 = (Math.max(e.start, from) - from) / span * width;
      var x1 = (Math.min(e.stop, now) - from) / span * width;
      ctx.fillStyle = e.ok ? colour(e.name) : "#111827";
      ctx.fillRect(x0, row * rowH + 2, Math.max(x1 - x0, 1), rowH - 3);
      names[e.name] = true;
      drawn++;
    });
    state.drawn = drawn;
    canvas.dataset.drawn = String(drawn);
    var legend = $("legend");
    if (legend) {
      legend.textContent = "";
      Object.keys(names).sort().forEach(function (n) {
        var item = el("span");
        var sw = el("i");
        sw.style.background = colour(n);
        item.appendChild(sw);
        item.appendChild(document.createTextNode(n));
        legend.appendChild(item);
      });
    }
  }

  // ----- workers page -----

  function cell(row, value, cls) { row.appendChild(el("td", cls, value)); }

  function drawWorkers(s) {
    var table = $("workers");
    if (!table) return;
    var body = table.tBodies[0];
    body.textContent = "";
    var threads = 0, rss = 0;
    s.workers.forEach(function (w) {
      threads += w.nthreads;
      rss += w.metrics.rss;
      var tr = el("tr");
      tr.dataset.worker = w.address;
      cell(tr, w.name);
      cell(tr, w.address);
      cell(tr, String(w.pid), "num");
      cell(tr, fmtInt(w.nthreads), "num");
      cell(tr, fmtInt(w.capacity), "num");
      cell(tr, w.metrics.cpu.toFixed(0) + " %", "num");
      var mem = el("td");
      var frac = w.memory_limit > 0 ? Math.min(w.metrics.rss / w.memory_limit, 1) : 0;
      var meter = el("span", "meter" + (frac > 0.8 ? " high" : ""));
      var fill = el("span");
      fill.style.width = (100 * frac) + "%";
      meter.appendChild(fill);
      mem.appendChild(meter);
      mem.appendChild(document.createTextNode(
        fmtBytes(w.metrics.rss) + " / " + fmtBytes(w.memory_limit)));
      tr.appendChild(mem);
      cell(tr, fmtBytes(w.metrics.managed), "num");
      cell(tr, fmtBytes(Math.max(w.metrics.rss - w.metrics.managed, 0)), "num");
      cell(tr, fmtBytes(w.metrics.spilled || 0), "num");
      cell(tr, w.status || "running");
      cell(tr, fmtInt(w.metrics.running), "num");
      cell(tr, fmtInt(w.metrics.queued), "num");
      cell(tr, fmtInt(w.assigned), "num");
      cell(tr, fmtInt(w.stored), "num");
      body.appendChild(tr);
    });
    if (s.workers.length === 0) {
      var tr = el("tr");
      var td = el("td", "empty", "No workers connected.");
      td.colSpan = 12;
      tr.appendChild(td);
      body.appendChild(tr);
    }
    text("workers-summary", fmtInt(s.workers.length) + " workers, " + fmtInt(threads) +
      " threads, " + fmtBytes(rss) + " resident");
    var limits = $("limits");
    if (limits) {
      $("limits-section").hidden = s.limits.length === 0;
      var lb = limits.tBodies[0];
      lb.textContent = "";
      s.limits.forEach(function (l) {
        var tr = el("tr");
        cell(tr, l.spec.name);
        cell(tr, l.spec.concurrency == null ? "–" : fmtInt(l.spec.concurrency), "num");
        cell(tr, l.spec.rate == null ? "–" : l.spec.rate + " / s", "num");
        cell(tr, fmtInt(l.running), "num");
        cell(tr, fmtInt(l.waiting), "num");
        lb.appendChild(tr);
      });
    }
  }

  // ----- a saved report -----

  function fmtSeconds(s) {
    if (s < 1e-3) return (s * 1e6).toFixed(0) + " µs";
    if (s < 1) return (s * 1e3).toFixed(1) + " ms";
    return s.toFixed(2) + " s";
  }

  function drawReport(r) {
    var groups = {}, workers = {}, total = 0, erred = 0;
    r.events.forEach(function (e) {
      var g = groups[e.name] = groups[e.name] || { n: 0, erred: 0, time: 0, max: 0 };
      var d = Math.max(e.stop - e.start, 0);
      g.n++; g.time += d; g.max = Math.max(g.max, d);
      if (!e.ok) { g.erred++; erred++; }
      total += d;
      workers[e.worker] = true;
    });
    text("r-duration", fmtSeconds(Math.max(r.stop - r.start, 0)));
    text("r-tasks", fmtInt(r.events.length));
    text("r-erred", fmtInt(erred));
    text("r-compute", fmtSeconds(total));
    text("r-workers", fmtInt(Object.keys(workers).length));
    if (r.code) {
      $("code-section").hidden = false;
      text("code", r.code);
    }
    var body = $("summary").tBodies[0];
    body.textContent = "";
    Object.keys(groups).sort(function (a, b) { return groups[b].time - groups[a].time; })
      .forEach(function (name) {
        var g = groups[name], tr = el("tr");
        tr.dataset.prefix = name;
        cell(tr, name);
        cell(tr, fmtInt(g.n), "num");
        cell(tr, fmtInt(g.erred), "num");
        cell(tr, fmtSeconds(g.time), "num");
        cell(tr, fmtSeconds(g.time / g.n), "num");
        cell(tr, fmtSeconds(g.max), "num");
        body.appendChild(tr);
      });
    drawStream();
  }

  // ----- updates -----

  var pending = false;
  function render() {
    pending = false;
    var s = state.status;
    if (!s) return;
    if (page === "status") {
      drawFigures(s);
      drawProgress(s);
      drawStream();
    } else if (page === "workers") {
      drawWorkers(s);
    }
  }
  function schedule() {
    if (!pending) {
      pending = true;
      window.requestAnimationFrame(render);
    }
  }

  function apply(update) {
    state.status = update.status;
    state.next = update.next;
    state.updates++;
    if (update.events && update.events.length) {
      Array.prototype.push.apply(state.events, update.events);
      var oldest = state.status.time - WINDOW_S;
      var keep = state.events.filter(function (e) { return e.stop >= oldest; });
      state.events = keep.slice(Math.max(0, keep.length - MAX_EVENTS));
    }
    document.body.dataset.updates = String(state.updates);
    schedule();
  }

  function connect() {
    var conn = $("connection");
    var source = new EventSource("/api/v1/updates?since=" + state.next);
    source.addEventListener("update", function (msg) {
      if (conn) { conn.textContent = "live"; conn.className = "connection live"; }
      apply(JSON.parse(msg.data));
    });
    source.onerror = function () {
      if (conn) { conn.textContent = "reconnecting…"; conn.className = "connection"; }
    };
  }

  window.addEventListener("resize", schedule);
  if (state.report) {
    state.status = { workers: [], time: state.report.stop };
    state.events = state.report.events;
    var conn = $("connection");
    if (conn) conn.textContent = state.report.title || "";
    drawReport(state.report);
    window.addEventListener("resize", function () { drawStream(); });
  } else {
    connect();
  }
})();
