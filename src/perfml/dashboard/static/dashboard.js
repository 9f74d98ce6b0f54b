// perfml dashboard: fetch a page's panels as JSON and draw them with Plotly, then refresh.
// The server decides what each panel holds (see perfml.dashboard.data); this only draws.
// A page with its data inline (a script tag #perfml-data, as perfml.dashboard.report writes
// it) is drawn once from that data, without a request.
(function () {
  "use strict";

  const body = document.body;
  const api = body.dataset.api;
  const refreshMs = Number(body.dataset.refresh || "30") * 1000;
  const rangeSelect = document.getElementById("range");
  const statusLine = document.getElementById("status");
  const UNITS_MS = { ms: 1, s: 1e3, m: 6e4, h: 36e5, d: 864e5, w: 6048e5, y: 31536e6 };
  const PLOT_CONFIG = { displaylogo: false, responsive: true };
  let loading = false;
  let loads = 0;

  function durationMs(text) {
    let total = 0;
    const re = /(\d+)(ms|[smhdwy])/g;
    let match;
    while ((match = re.exec(text)) !== null) total += Number(match[1]) * UNITS_MS[match[2]];
    return total;
  }

  function clear(el) {
    if (el.dataset.mode === "plot") Plotly.purge(el);
    el.replaceChildren();
    el.dataset.mode = "";
  }

  function message(el, text, cls) {
    clear(el);
    const p = document.createElement("p");
    p.className = "message " + cls;
    p.textContent = text;
    el.appendChild(p);
    el.dataset.mode = "message";
  }

  function baseLayout(panel, range) {
    return {
      margin: { l: 60, r: 20, t: 10, b: 40 },
      height: 280,
      showlegend: true,
      legend: { orientation: "h", y: -0.2 },
      xaxis: { type: "date", range: [range.start, range.end] },
      yaxis: {
        tickformat: panel.format.tickformat,
        ticksuffix: panel.format.suffix,
        rangemode: "tozero",
        automargin: true,
      },
      font: { family: "system-ui, sans-serif", size: 12 },
      paper_bgcolor: "rgba(0,0,0,0)",
      plot_bgcolor: "rgba(0,0,0,0)",
    };
  }

  // Vertical dashed lines at panel.markers[i].at (Unix ms), e.g. promotions, on a time axis.
  function addMarkers(layout, panel) {
    if (!panel.markers || panel.markers.length === 0) return;
    layout.shapes = (layout.shapes || []).concat(panel.markers.map(function (m) {
      const at = new Date(m.at).toISOString();
      return {
        type: "line", xref: "x", yref: "paper", x0: at, x1: at, y0: 0, y1: 1,
        line: { color: "#8f3bb8", width: 1, dash: "dot" },
        label: { text: m.label, textposition: "end", font: { color: "#8f3bb8", size: 10 } },
      };
    }));
  }

  function plot(el, traces, layout) {
    if (el.dataset.mode !== "plot") {
      clear(el);
      el.dataset.mode = "plot";
    }
    Plotly.react(el, traces, layout, PLOT_CONFIG);
  }

  function drawTimeseries(el, panel, range) {
    const traces = panel.series.map(function (s) {
      return {
        type: "scatter",
        mode: s.t.length <= 60 ? "lines+markers" : "lines",
        name: s.name,
        x: s.x || s.t,
        y: s.v,
        connectgaps: false,
        hovertemplate: "%{y}<extra>" + s.name.replace(/</g, "&lt;") + "</extra>",
      };
    });
    const layout = baseLayout(panel, range);
    // A panel over labelled windows (drift per month) gives its own x axis.
    if (panel.xaxis) layout.xaxis = { type: panel.xaxis.type, automargin: true };
    if (panel.threshold) {
      layout.shapes = [{
        type: "line", xref: "paper", x0: 0, x1: 1,
        y0: panel.threshold.value, y1: panel.threshold.value,
        line: { color: "#c4162a", width: 2, dash: "dash" },
      }];
      layout.annotations = [{
        xref: "paper", x: 1, xanchor: "right", y: panel.threshold.value, yanchor: "bottom",
        text: panel.threshold.label, showarrow: false, font: { color: "#c4162a" },
      }];
    }
    if (!panel.xaxis) addMarkers(layout, panel);
    plot(el, traces, layout);
  }

  function drawStat(el, panel) {
    const shown = panel.series.filter(function (s) { return s.value !== null; });
    const n = shown.length;
    const traces = shown.map(function (s, i) {
      return {
        type: "indicator",
        mode: "number",
        value: s.value,
        title: { text: s.name },
        number: { valueformat: panel.format.tickformat, suffix: panel.format.suffix },
        domain: { x: [i / n, (i + 1) / n], y: [0, 1] },
      };
    });
    plot(el, traces, { height: 160, margin: { l: 10, r: 10, t: 30, b: 10 },
      paper_bgcolor: "rgba(0,0,0,0)" });
  }

  function drawTimeline(el, panel, range) {
    const colors = panel.colors || {};
    const traces = panel.states.map(function (state) {
      const trace = {
        type: "bar", orientation: "h", name: state, y: [], x: [], base: [], text: [],
        marker: { color: colors[state] || "#8e8e8e" },
        hovertemplate: "%{y}<br>%{text}<extra>" + state + "</extra>",
        textposition: "none",
      };
      panel.lanes.forEach(function (lane) {
        lane.segments.forEach(function (seg) {
          if (seg.state !== state) return;
          trace.y.push(lane.name);
          trace.base.push(new Date(seg.start).toISOString());
          trace.x.push(Math.max(seg.end - seg.start, 1));
          trace.text.push((seg.reason ? seg.reason + ", " : "") +
            new Date(seg.start).toISOString() + " → " + new Date(seg.end).toISOString());
        });
      });
      return trace;
    }).filter(function (t) { return t.x.length > 0; });
    const layout = baseLayout(panel, range);
    layout.barmode = "overlay";
    layout.height = Math.max(160, 60 + 26 * panel.lanes.length);
    layout.yaxis = { type: "category", automargin: true, autorange: "reversed" };
    // Under the date ticks, whatever the height: a short timeline has little room.
    layout.legend = { orientation: "h", yref: "container", y: 0, yanchor: "bottom" };
    layout.margin = Object.assign({}, layout.margin, { b: 64 });
    addMarkers(layout, panel);
    plot(el, traces, layout);
  }

  function cellText(value) {
    if (value === null || value === undefined) return "";
    return String(value);
  }

  function drawTable(el, panel) {
    clear(el);
    const table = document.createElement("table");
    const head = table.createTHead().insertRow();
    panel.columns.forEach(function (c) {
      const th = document.createElement("th");
      th.textContent = c;
      head.appendChild(th);
    });
    const tbody = table.createTBody();
    // panel.flagged: [row, column] of the cells to highlight (e.g. over a threshold).
    const flagged = new Set((panel.flagged || []).map(function (rc) { return rc[0] + ":" + rc[1]; }));
    panel.rows.forEach(function (row, r) {
      const tr = tbody.insertRow();
      row.forEach(function (value, c) {
        const td = tr.insertCell();
        td.textContent = cellText(value);
        if (flagged.has(r + ":" + c)) td.className = "flagged";
      });
    });
    el.appendChild(table);
    el.dataset.mode = "table";
  }

  function draw(panel, range) {
    const el = document.getElementById("body-" + panel.id);
    if (!el) return;
    if (panel.error) return message(el, "This panel could not be read: " + panel.error, "error");
    if (panel.empty) return message(el, panel.message || "No data yet.", "empty");
    if (panel.kind === "timeseries") return drawTimeseries(el, panel, range);
    if (panel.kind === "stat") return drawStat(el, panel);
    if (panel.kind === "timeline") return drawTimeline(el, panel, range);
    return drawTable(el, panel);
  }

  async function load() {
    if (loading) return;
    loading = true;
    try {
      const end = Date.now() / 1000;
      const span = durationMs(rangeSelect.value) / 1000;
      const step = Math.max(1, Math.ceil(span / 240));
      const url = api + "?start=" + (end - span) + "&end=" + end + "&step=" + step;
      const response = await fetch(url, { headers: { Accept: "application/json" } });
      const data = await response.json();
      if (!response.ok) {
        statusLine.textContent = "could not load: " + (data.error || response.status);
        statusLine.className = "error";
        return;
      }
      data.panels.forEach(function (panel) { draw(panel, data.range); });
      loads += 1;
      body.dataset.loads = String(loads);
      statusLine.textContent = "updated " + new Date().toISOString().slice(11, 19) + "Z";
      statusLine.className = "";
    } catch (error) {
      statusLine.textContent = "could not load: " + error.message;
      statusLine.className = "error";
    } finally {
      loading = false;
    }
  }

  const frozen = document.getElementById("perfml-data");
  if (frozen) {
    const data = JSON.parse(frozen.textContent);
    data.sections.forEach(function (section) {
      section.panels.forEach(function (panel) { draw(panel, data.range); });
    });
    body.dataset.loads = "1";
    return;
  }

  rangeSelect.addEventListener("change", load);
  load();
  if (refreshMs > 0) setInterval(load, refreshMs);
})();
