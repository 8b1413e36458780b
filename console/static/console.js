// The console's only script: it refreshes the tables marked with
// data-refresh-url in place and draws the charts. It builds the charts with
// DOM methods and sets text with textContent only; the refreshed tables are
// the server's own escaped HTML.
(function () {
  "use strict";
  var body = document.body;
  var prefix = body.dataset.prefix || "";
  var every = parseInt(body.dataset.refresh, 10) || 3000;
  var SVG = "http://www.w3.org/2000/svg";

  function refreshTables() {
    document.querySelectorAll("[data-refresh-url]").forEach(function (el) {
      if (!el.id) return;
      fetch(el.dataset.refreshUrl, { credentials: "same-origin", cache: "no-store" })
        .then(function (r) { if (!r.ok) throw new Error(r.status); return r.text(); })
        .then(function (html) {
          var doc = new DOMParser().parseFromString(html, "text/html");
          var fresh = doc.getElementById(el.id);
          if (fresh) el.replaceWith(document.importNode(fresh, true));
          body.classList.remove("stale");
        })
        .catch(function () { body.classList.add("stale"); });
    });
  }

  function node(name, attrs, parent) {
    var e = document.createElementNS(SVG, name);
    Object.keys(attrs).forEach(function (k) { e.setAttribute(k, String(attrs[k])); });
    if (parent) parent.appendChild(e);
    return e;
  }

  function text(parent, x, y, s, cls, anchor) {
    var t = node("text", { x: x, y: y, "class": cls, "text-anchor": anchor || "start" }, parent);
    t.textContent = s;
    return t;
  }

  function fmt(v) {
    if (v >= 1e6) return (v / 1e6).toFixed(1) + "M";
    if (v >= 1e4) return (v / 1e3).toFixed(0) + "k";
    if (v >= 100 || v === Math.round(v)) return String(Math.round(v));
    return v.toFixed(1);
  }

  // draw renders one queue's samples: backlog (left scale) and delivered
  // per second (right scale) against time.
  function draw(fig, samples) {
    var W = 480, H = 160, L = 44, R = 44, T = 10, B = 22;
    var old = fig.querySelector("svg");
    var svg = node("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "class": "plot",
      "data-points": samples.length });
    var title = node("title", {}, svg);
    title.textContent = "backlog and delivered per second";
    if (old) old.replaceWith(svg); else fig.appendChild(svg);
    node("rect", { x: L, y: T, width: W - L - R, height: H - T - B, "class": "frame" }, svg);
    if (samples.length < 2) {
      text(svg, W / 2, H / 2, "collecting samples…", "note", "middle");
      return;
    }
    var t0 = Date.parse(samples[0].at), t1 = Date.parse(samples[samples.length - 1].at);
    var span = Math.max(t1 - t0, 1);
    var maxB = 1, maxR = 1;
    samples.forEach(function (s) { maxB = Math.max(maxB, s.backlog); maxR = Math.max(maxR, s.delivered_per_sec); });
    var topB = maxB, topR = maxR; // the labels: the largest values drawn
    maxB *= 1.1; maxR *= 1.1; // headroom: a flat line does not hug the frame
    function x(s) { return L + (Date.parse(s.at) - t0) / span * (W - L - R); }
    function line(key, max, cls) {
      var pts = samples.map(function (s) {
        return x(s).toFixed(1) + "," + (H - B - s[key] / max * (H - T - B)).toFixed(1);
      }).join(" ");
      node("polyline", { points: pts, "class": cls }, svg);
    }
    line("backlog", maxB, "backlog");
    line("delivered_per_sec", maxR, "rate");
    text(svg, L - 4, T + 4 + (H - T - B) * (1 - topB / maxB), fmt(topB), "axis backlog-label", "end");
    text(svg, L - 4, H - B, "0", "axis", "end");
    text(svg, W - R + 4, T + 4 + (H - T - B) * (1 - topR / maxR), fmt(topR) + "/s", "axis rate-label");
    text(svg, W - R + 4, H - B, "0", "axis");
    text(svg, L, H - 6, "-" + Math.round(span / 1000) + "s", "axis");
    text(svg, W - R, H - 6, "now", "axis", "end");
    text(svg, W / 2 - 6, H - 6, "backlog", "legend backlog-label", "end");
    text(svg, W / 2 + 6, H - 6, "delivered/s", "legend rate-label");
  }

  function refreshCharts() {
    var figs = document.querySelectorAll("figure.chart[data-queue]");
    if (!figs.length) return;
    var url = prefix + "/api/history";
    if (figs.length === 1) url += "?queue=" + encodeURIComponent(figs[0].dataset.queue);
    fetch(url, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (h) {
        var byQueue = {};
        h.queues.forEach(function (q) { byQueue[q.queue] = q.samples; });
        figs.forEach(function (f) { draw(f, byQueue[f.dataset.queue] || []); });
      })
      .catch(function () { body.classList.add("stale"); });
  }

  function tick() {
    if (!document.hidden) {
      refreshTables();
      refreshCharts();
    }
  }
  refreshCharts();
  setInterval(tick, every);
})();
