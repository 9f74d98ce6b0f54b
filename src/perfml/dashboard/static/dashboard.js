// perfml dashboard: fetch a page's panels as JSON and draw them with Plotly, then refresh.
// The server decides what each panel holds (see perfml.dashboard.data); this only draws.
// A page with its data inline (a script tag #perfml-data, as perfml.dashboard.report writes
// it) is drawn once from that data, without a request.
// Names in the data (hosts, metrics) are user data: they are written as text, never as HTML,
// and escaped where Plotly reads its own markup (labels, hover text).
(function () {
  "use strict";

  const body = document.body;
  const api = body.dataset.api;
  const refreshMs = Number(body.dataset.refresh || "30") * 1000;
  const rangeSelect = document.getElementById("range");
  const statusLine = document.getElementById("status");
  const focusLine = document.getElementById("focus");
  const here = new URLSearchParams(window.location.search);
  const FOCUS_KEYS = ["entity", "metric"];
  // A page may be opened on a window of its own (?start=&end=, e.g. from an incident's link).
  const pinned = here.has("start") || here.has("end");
  // A page that ends at its latest data asks for a span, and the server places it.
  const latest = body.dataset.latest === "1";
  // Heatmap colours: under the threshold (a ratio under 1) pale, over it warm to red.
  const HEAT_SCALE = [[0, "#eef2f7"], [0.4999, "#bfd3ee"], [0.5, "#fbbf24"], [1, "#b91c1c"]];
  const SHADES = { labelled: "rgba(50, 116, 217, 0.16)", incidents: "rgba(196, 22, 42, 0.18)" };
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

  // Text Plotly shows as it is: its own markup (<b>, <br>, &amp;) read as characters.
  function plotText(text) {
    return String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
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
        hovertemplate: "%{y}<extra>" + plotText(s.name) + "</extra>",
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

  const VERDICTS = [
    ["true_anomaly", "true anomaly"],
    ["false_alarm", "false alarm"],
    ["expected_change", "expected change"],
  ];

  // A verdict given is shown as text; otherwise a button per verdict POSTs it (as JSON) for
  // the row's incident, then the page reloads its panels.
  function verdictCell(td, entry) {
    if (!entry) return;
    td.className = "verdict";
    if (entry.given) {
      td.textContent = entry.given.replace(/_/g, " ");
      return;
    }
    VERDICTS.forEach(function (choice) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = choice[1];
      button.dataset.verdict = choice[0];
      button.dataset.incident = entry.id;
      button.addEventListener("click", async function () {
        td.querySelectorAll("button").forEach(function (b) { b.disabled = true; });
        const response = await fetch("/api/incidents/" + encodeURIComponent(entry.id) + "/verdict", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ verdict: choice[0] }),
        });
        if (!response.ok) {
          const data = await response.json().catch(function () { return {}; });
          statusLine.textContent = "verdict not recorded: " + (data.error || response.status);
          return;
        }
        load();
      });
      td.appendChild(button);
    });
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
    // panel.links: [row, column, href] of the cells that link (a query string of this page).
    const links = new Map((panel.links || []).map(function (l) { return [l[0] + ":" + l[1], l[2]]; }));
    // panel.marked: the rows to set apart (e.g. fleet incidents).
    const marked = new Set(panel.marked || []);
    // panel.verdicts: [row, incident id, its verdict or null] of the rows that take a verdict.
    const verdicts = panel.verdicts
      ? new Map(panel.verdicts.map(function (v) { return [v[0], { id: v[1], given: v[2] }]; }))
      : null;
    if (verdicts) {
      const th = document.createElement("th");
      th.textContent = "verdict";
      head.appendChild(th);
    }
    panel.rows.forEach(function (row, r) {
      const tr = tbody.insertRow();
      if (marked.has(r)) tr.className = "marked";
      row.forEach(function (value, c) {
        const td = tr.insertCell();
        const href = links.get(r + ":" + c);
        if (href !== undefined && href.charAt(0) === "?") {
          const a = document.createElement("a");
          a.setAttribute("href", href);
          a.textContent = cellText(value);
          td.appendChild(a);
        } else {
          td.textContent = cellText(value);
        }
        if (flagged.has(r + ":" + c)) td.className = "flagged";
      });
      if (verdicts) verdictCell(tr.insertCell(), verdicts.get(r));
    });
    el.appendChild(table);
    el.dataset.mode = "table";
  }

  // Hosts (rows) over time buckets, coloured by the highest score over its threshold.
  function drawHeatmap(el, panel, range) {
    const map = panel.heatmap;
    const rows = map.y.map(plotText);
    const trace = {
      type: "heatmap",
      x: map.x.map(function (t) { return new Date(t + map.bucket / 2).toISOString(); }),
      y: rows,
      z: map.z,
      customdata: map.metrics.map(function (row) { return row.map(plotText); }),
      zmin: 0,
      zmax: 2,
      colorscale: HEAT_SCALE,
      hoverongaps: false,
      xgap: 1,
      ygap: 1,
      colorbar: {
        title: { text: "score / threshold", side: "right" },
        tickvals: [0, 1, 2], ticktext: ["0", "1 threshold", "≥ 2"], thickness: 12,
      },
      hovertemplate: "%{y}<br>%{x}<br>%{customdata}: %{z:.2f} × threshold<extra></extra>",
    };
    const layout = baseLayout(panel, range);
    layout.showlegend = false;
    layout.height = Math.max(200, 90 + 20 * rows.length);
    layout.yaxis = { type: "category", automargin: true, autorange: "reversed" };
    layout.margin = Object.assign({}, layout.margin, { b: 48 });
    if (panel.hidden > 0) {
      layout.annotations = [{
        xref: "paper", yref: "paper", x: 0, y: 0, yanchor: "top", yshift: -28,
        xanchor: "left", showarrow: false, font: { color: "#636c76" },
        text: "and " + panel.hidden + " more host" + (panel.hidden === 1 ? "" : "s") +
          " with lower peaks",
      }];
    }
    plot(el, [trace], layout);
  }

  // One host: a row per metric, its values (left axis), its scores and the threshold (right
  // axis), labelled windows and detected incidents shaded.
  function drawScored(el, panel, range) {
    const n = panel.series.length;
    const gap = n > 1 ? 0.08 / (n - 1) : 0;
    const share = (1 - gap * (n - 1)) / n;
    const layout = baseLayout(panel, range);
    layout.height = 70 + 210 * n;
    layout.legend = { orientation: "h", yref: "container", y: 0, yanchor: "bottom" };
    layout.margin = Object.assign({}, layout.margin, { r: 60, b: 70 });
    layout.shapes = [];
    const traces = [];
    panel.series.forEach(function (s, i) {
      const valueAxis = 2 * i + 1;
      const scoreAxis = 2 * i + 2;
      const vName = valueAxis === 1 ? "y" : "y" + valueAxis;
      const sName = "y" + scoreAxis;
      const top = 1 - i * (share + gap);
      layout[valueAxis === 1 ? "yaxis" : "yaxis" + valueAxis] = {
        domain: [top - share, top], automargin: true,
        title: { text: plotText(s.name), font: { size: 11 } },
      };
      layout["yaxis" + scoreAxis] = {
        overlaying: vName, side: "right", rangemode: "tozero", showgrid: false,
        title: { text: "score", font: { size: 11, color: "#c4162a" } },
        tickfont: { color: "#c4162a" },
      };
      const x = s.t.map(function (t) { return new Date(t).toISOString(); });
      const name = plotText(s.name);
      traces.push({
        type: "scatter", mode: "lines", name: name + " value", x: x, y: s.v, yaxis: vName,
        legendgroup: name, line: { color: "#3274d9", width: 1 },
        hovertemplate: "%{y}<extra>" + name + "</extra>",
      });
      traces.push({
        type: "scatter", mode: "lines", name: name + " score", x: x, y: s.score, yaxis: sName,
        legendgroup: name, line: { color: "#c4162a", width: 1 }, opacity: 0.7,
        hovertemplate: "score %{y:.3f}<extra>" + name + "</extra>",
      });
      traces.push({
        type: "scatter", mode: "lines", name: name + " threshold", x: x, y: s.threshold,
        yaxis: sName, legendgroup: name, line: { color: "#c4162a", width: 1.5, dash: "dash", shape: "hv" },
        hovertemplate: "threshold %{y:.3f}<extra>" + name + "</extra>",
      });
      ["labelled", "incidents"].forEach(function (kind, k) {
        (s[kind] || []).forEach(function (span) {
          // An incident of one point still shows: at least 1/200 of the range wide.
          const pad = Math.max(0, (range.end - range.start) / 200 - (span[1] - span[0])) / 2;
          layout.shapes.push({
            type: "rect", xref: "x", yref: vName + " domain",
            x0: new Date(span[0] - pad).toISOString(), x1: new Date(span[1] + pad).toISOString(),
            // Labelled windows on the upper half, incidents on the lower: side by side.
            y0: k === 0 ? 0.5 : 0, y1: k === 0 ? 1 : 0.5,
            fillcolor: SHADES[kind], line: { width: 0 }, layer: "below",
          });
        });
      });
    });
    layout.xaxis.anchor = n === 1 ? "y" : "y" + (2 * (n - 1) + 1);
    plot(el, traces, layout);
  }

  function draw(panel, range) {
    const el = document.getElementById("body-" + panel.id);
    if (!el) return;
    const heading = el.parentElement && el.parentElement.querySelector("h3");
    if (heading && panel.title) heading.textContent = panel.title;
    if (panel.error) return message(el, "This panel could not be read: " + panel.error, "error");
    if (panel.empty) return message(el, panel.message || "No data yet.", "empty");
    if (panel.kind === "timeseries" && panel.scored) return drawScored(el, panel, range);
    if (panel.kind === "timeseries") return drawTimeseries(el, panel, range);
    if (panel.kind === "heatmap") return drawHeatmap(el, panel, range);
    if (panel.kind === "stat") return drawStat(el, panel);
    if (panel.kind === "timeline") return drawTimeline(el, panel, range);
    return drawTable(el, panel);
  }

  function panelsUrl() {
    const params = new URLSearchParams();
    FOCUS_KEYS.forEach(function (key) { if (here.get(key)) params.set(key, here.get(key)); });
    const span = durationMs(rangeSelect.value) / 1000;
    const step = Math.max(1, Math.ceil(span / 240));
    if (pinned) {
      ["start", "end"].forEach(function (key) { if (here.get(key)) params.set(key, here.get(key)); });
    } else if (latest) {
      params.set("range", rangeSelect.value);
      params.set("step", String(step));
    } else {
      const end = Date.now() / 1000;
      params.set("start", String(end - span));
      params.set("end", String(end));
      params.set("step", String(step));
    }
    return api + "?" + params.toString();
  }

  function showFocus() {
    const shown = FOCUS_KEYS.filter(function (key) { return here.get(key); })
      .map(function (key) { return key + " " + here.get(key); });
    if (pinned) shown.push("a window of its own");
    if (shown.length === 0) return;
    focusLine.textContent = shown.join(", ") + " · ";
    const all = document.createElement("a");
    all.setAttribute("href", window.location.pathname);
    all.textContent = "show all";
    focusLine.appendChild(all);
    if (pinned) rangeSelect.disabled = true;
  }

  async function load() {
    if (loading) return;
    loading = true;
    try {
      const response = await fetch(panelsUrl(), { headers: { Accept: "application/json" } });
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

  showFocus();
  rangeSelect.addEventListener("change", load);
  load();
  if (refreshMs > 0) setInterval(load, refreshMs);
})();
