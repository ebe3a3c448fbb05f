// entropyd status page: polls /api/status (the document `entropyctl status --json` prints)
// every second and draws it with Chart.js. Rates are computed here from the cumulative
// counters of two successive polls. The charts are kept in window.entropydCharts.
"use strict";

const POINTS = 120;
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
                "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

function makeChart(id, stepped) {
  if (typeof Chart === "undefined") {
    return null;
  }
  return new Chart(document.getElementById(id), {
    type: "line",
    data: { labels: [], datasets: [] },
    options: {
      animation: false, responsive: true, maintainAspectRatio: false,
      elements: { point: { radius: 0 }, line: { borderWidth: 2, stepped: !!stepped } },
      scales: { y: { beginAtZero: true } },
      plugins: { legend: { labels: { boxWidth: 12 } } },
    },
  });
}

const charts = {
  sources: makeChart("c-sources"), clients: makeChart("c-clients"),
  served: makeChart("c-served"), failures: makeChart("c-failures", true),
  pool: makeChart("c-pool"), waiting: makeChart("c-waiting", true),
};
window.entropydCharts = charts;

// Append value to the series name of chart (a new series starts with zeros).
function push(chart, name, value) {
  if (chart === null) {
    return;
  }
  let ds = chart.data.datasets.find((d) => d.label === name);
  if (ds === undefined) {
    const color = COLORS[chart.data.datasets.length % COLORS.length];
    ds = { label: name, data: [], borderColor: color, backgroundColor: color };
    chart.data.datasets.push(ds);
  }
  while (ds.data.length < chart.data.labels.length - 1) {
    ds.data.unshift(0);
  }
  ds.data.push(value);
}

// Start a new point in time on every chart; trim the oldest.
function tick(label) {
  for (const c of Object.values(charts)) {
    if (c === null) {
      continue;
    }
    c.data.labels.push(label);
    if (c.data.labels.length > POINTS) {
      c.data.labels.shift();
    }
    for (const ds of c.data.datasets) {
      while (ds.data.length > c.data.labels.length) {
        ds.data.shift();
      }
    }
  }
}

function table(id, head, rows) {
  const t = document.getElementById(id);
  t.innerHTML = "";
  const tr = t.insertRow();
  for (const [h, num] of head) {
    const th = document.createElement("th");
    th.textContent = h;
    if (num) {
      th.className = "n";
    }
    tr.appendChild(th);
  }
  for (const r of rows) {
    const row = t.insertRow();
    r.forEach((v, i) => {
      const td = row.insertCell();
      td.textContent = v;
      if (head[i][1]) {
        td.className = "n";
      }
    });
  }
}

let last = null;

function update(st, now) {
  const dt = last === null ? 1 : Math.max((now - last.at) / 1000, 0.001);
  const prev = (list, key, id) => {
    if (last === null) {
      return undefined;
    }
    const o = last.st[list].find((x) => x[key] === id);
    return o;
  };
  tick(new Date(now).toLocaleTimeString());
  for (const s of st.sources) {
    const p = prev("sources", "spec", s.spec);
    push(charts.sources, s.spec, p ? Math.max(0, (s.bytes_passed - p.bytes_passed) / dt) : 0);
    push(charts.failures, s.spec, s.rct_failures + s.apt_failures);
  }
  for (const c of st.clients) {
    const p = prev("clients", "peer", c.peer);
    push(charts.clients, c.peer, p ? Math.max(0, (c.bytes_served - p.bytes_served) / dt) : 0);
  }
  push(charts.served, "bytes delivered", st.pool.delivered);
  push(charts.pool, "level", st.pool.level);
  push(charts.pool, "capacity", st.pool.capacity);
  push(charts.waiting, "clients waiting", st.clients_waiting);
  for (const c of Object.values(charts)) {
    if (c !== null) {
      c.update("none");
    }
  }
  document.getElementById("summary").textContent =
    "entropyd " + st.version + " — up " + (st.time - st.started) + " s — " +
    st.sources.length + " source(s), " + st.endpoints.length + " endpoint(s), " +
    st.clients.length + " client(s), " + st.clients_waiting + " waiting — pool " +
    st.pool.level + "/" + st.pool.capacity + " bytes — " + st.pool.delivered +
    " bytes delivered";
  table("t-sources", [["source", 0], ["state", 0], ["read", 1], ["passed", 1],
    ["discarded", 1], ["B/s (10 s)", 1], ["RCT", 1], ["APT", 1], ["last failure", 0]],
  st.sources.map((s) => [s.spec, s.state, s.bytes_read, s.bytes_passed, s.bytes_discarded,
    Math.round(s.rate), s.rct_failures, s.apt_failures,
    s.last_failure ? s.last_failure + " at " +
      new Date(s.last_failure_at * 1000).toLocaleTimeString() : "-"]));
  table("t-endpoints", [["endpoint", 0], ["kind", 0], ["state", 0], ["clients", 1]],
    st.endpoints.map((e) => [e.spec, e.kind + (e.tls ? "+tls" : ""), e.state, e.clients]));
  table("t-clients", [["peer", 0], ["endpoint", 0], ["served", 1], ["owed", 1],
    ["B/s (10 s)", 1], ["throttled", 1], ["since", 0]],
  st.clients.map((c) => [c.peer, c.endpoint, c.bytes_served, c.bytes_owed, Math.round(c.rate),
    c.throttled_bytes, new Date(c.connected_since * 1000).toLocaleTimeString()]));
  last = { st: st, at: now };
}

async function poll() {
  try {
    const r = await fetch("/api/status", { cache: "no-store" });
    update(await r.json(), Date.now());
    document.getElementById("error").textContent =
      typeof Chart === "undefined" ? "Chart.js is not installed: no graphs" : "";
  } catch (e) {
    document.getElementById("error").textContent = "cannot reach entropyd: " + e;
  }
}

poll();
setInterval(poll, 1000);
