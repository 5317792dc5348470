// The data-quality page: bars of one symbol and interval, with what the store lacks drawn on them.
// Reads /stocks/{symbol}/history, /coverage and /versions, and follows /ws; read-only, no token.
import {
  CandlestickSeries,
  HistogramSeries,
  createChart,
  createSeriesMarkers,
} from "./vendor/lightweight-charts/lightweight-charts.standalone.production.mjs";

const root = document.documentElement;
const SYMBOL = root.dataset.symbol;
const STORED = (root.dataset.stored || "").split(",").filter(Boolean);
const ADJUSTMENTS = (root.dataset.adjustments || "").split(",").filter(Boolean);
const ADJUSTMENT_TEXT = {
  raw: "raw (as traded)",
  split: "split-adjusted",
  dividend: "dividend-adjusted",
  all: "split- and dividend-adjusted",
};
const TIMEFRAMES = ["1m", "5m", "15m", "30m", "1h", "4h", "1d", "1w", "1mo"];
const LIMIT = 1000;
const DAY = 86400;
const STATE_COLOR = { missing: "#d32f2f", queued: "#f9a825", confirmed_empty: "#9e9e9e" };
const STATE_TEXT = { missing: "missing", queued: "missing, queued for backfill", confirmed_empty: "confirmed empty" };
const STATE_RANK = { missing: 3, queued: 2, confirmed_empty: 1 };
const PROVIDER_COLORS = ["#1565c0", "#2e7d32", "#6a1b9a", "#ef6c00", "#00838f", "#5d4037", "#c2185b"];
const REVISED_COLOR = "#8e24aa";
const JOB_COLOR = "#e65100";
const ACTION_COLOR = "#00695c";
const UP_COLOR = "#26a69a";
const DOWN_COLOR = "#455a64";

const $ = (id) => document.getElementById(id);

/** Seconds of a timeframe (1m, 4h, 1d, 1w, 1mo: 31 days, the longest month). */
function stepOf(interval) {
  const m = /^(\d+)(mo|m|h|d|w)$/.exec(interval);
  const unit = { m: 60, h: 3600, d: DAY, w: 7 * DAY, mo: 31 * DAY }[m[2]];
  return Number(m[1]) * unit;
}
const seconds = (iso) => Math.floor(Date.parse(iso) / 1000);
const isoOf = (t) => new Date(t * 1000).toISOString().replace(".000Z", "Z");
const label = (t) => isoOf(t).replace("T", " ").replace(":00Z", "");

const state = {
  interval: null,
  adjustment: "raw",
  adjusted: null, // the history page's `adjustment` (actions applied), null for raw
  end: null, // ISO or null (now)
  bars: new Map(), // time -> bar of /history (plus .versions when revised)
  counted: null,
  ranges: [],
  revised: new Map(), // time of the chart bar -> [revised stored bars]
  providers: new Map(), // provider -> colour
  coverageWindow: null,
  ws: null,
  reloadTimer: null,
};

// ----------------------------------------------------------------------------------------------
// chart

const chart = createChart($("chart"), {
  autoSize: true,
  layout: { background: { color: "#ffffff" }, textColor: "#212121" },
  timeScale: { timeVisible: true, secondsVisible: false },
  localization: { timeFormatter: (t) => label(t) },
  rightPriceScale: { scaleMargins: { top: 0.08, bottom: 0.12 } },
});
const quality = chart.addSeries(HistogramSeries, {
  priceScaleId: "quality",
  lastValueVisible: false,
  priceLineVisible: false,
  base: 0,
});
chart.priceScale("quality").applyOptions({ scaleMargins: { top: 0, bottom: 0 }, visible: false });
const jobStrip = chart.addSeries(HistogramSeries, {
  priceScaleId: "jobs",
  lastValueVisible: false,
  priceLineVisible: false,
});
chart.priceScale("jobs").applyOptions({ scaleMargins: { top: 0, bottom: 0.97 }, visible: false });
const providerStrip = chart.addSeries(HistogramSeries, {
  priceScaleId: "provider",
  lastValueVisible: false,
  priceLineVisible: false,
});
chart.priceScale("provider").applyOptions({ scaleMargins: { top: 0.97, bottom: 0 }, visible: false });
// up teal, down slate: red is the colour of missing bars
const candles = chart.addSeries(CandlestickSeries, {
  priceLineVisible: false,
  upColor: UP_COLOR,
  wickUpColor: UP_COLOR,
  borderUpColor: UP_COLOR,
  downColor: DOWN_COLOR,
  wickDownColor: DOWN_COLOR,
  borderDownColor: DOWN_COLOR,
});
const markers = createSeriesMarkers(candles, []);

// ----------------------------------------------------------------------------------------------
// reading the API

async function getJson(path, params) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined) url.searchParams.set(k, v);
  const r = await fetch(url, { headers: { Accept: "application/json" } });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.detail || `${url.pathname}: HTTP ${r.status}`);
  return body;
}

function providerColor(name) {
  if (!state.providers.has(name)) {
    state.providers.set(name, PROVIDER_COLORS[state.providers.size % PROVIDER_COLORS.length]);
  }
  return state.providers.get(name);
}

/** Index of the last of `times` (sorted) at or before t; -1 when none is. */
function lastAtOrBefore(t, times) {
  let lo = 0;
  let hi = times.length - 1;
  let found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (times[mid] <= t) {
      found = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return found;
}

/** The time of the chart bar holding instant t: the bar starting at or before t within a step. */
function chartBarAt(t, times) {
  const i = lastAtOrBefore(t, times);
  if (i >= 0 && t < times[i] + stepOf(state.interval)) return times[i];
  return null;
}

/** Where the built bar holding t would stand when no bar of it is stored. Intraday: in step
 * with the nearest bar shown before it (session-aligned buckets start at the open, e.g. 14:30);
 * daily and longer: the UTC day. */
function emptySlot(t, times, step) {
  if (step >= DAY || !times.length) return t - (t % Math.min(step, DAY));
  const ref = times[Math.max(0, lastAtOrBefore(t, times))];
  return ref + Math.floor((t - ref) / step) * step;
}

function sortedTimes() {
  return [...state.bars.keys()].sort((a, b) => a - b);
}

/** The quality band: one column per chart slot that holds a bar not stored (worst state wins). */
function qualityPoints() {
  const times = sortedTimes();
  const countedStep = stepOf(state.counted);
  const chartStep = stepOf(state.interval);
  const worst = new Map();
  for (const range of state.ranges) {
    const start = seconds(range.start);
    for (let k = 0; k < range.bars; k++) {
      const t = start + k * countedStep;
      let slot = t;
      if (state.counted !== state.interval) slot = chartBarAt(t, times) ?? emptySlot(t, times, chartStep);
      const prev = worst.get(slot);
      if (!prev || STATE_RANK[range.state] > STATE_RANK[prev]) worst.set(slot, range.state);
    }
  }
  return [...worst.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([time, s]) => ({ time, value: 1, color: STATE_COLOR[s] + "55", state: s }));
}

/** The slots (bars shown and quality columns) that overlap a queued or running backfill job. */
function jobPoints() {
  const step = stepOf(state.interval);
  const jobs = (state.coverage?.backfills || []).map((j) => [seconds(j.start), seconds(j.end), j.status]);
  const slots = new Set([...state.bars.keys(), ...state.quality.map((p) => p.time)]);
  const out = [];
  for (const t of [...slots].sort((a, b) => a - b)) {
    const job = jobs.find(([start, end]) => t < end && start < t + step);
    if (job) out.push({ time: t, value: 1, color: JOB_COLOR, status: job[2] });
  }
  return out;
}

function draw() {
  const times = sortedTimes();
  candles.setData(
    times.map((t) => {
      const b = state.bars.get(t);
      return { time: t, open: b.open, high: b.high, low: b.low, close: b.close };
    }),
  );
  providerStrip.setData(
    times.map((t) => ({ time: t, value: 1, color: providerColor(state.bars.get(t).provider) })),
  );
  state.quality = qualityPoints();
  quality.setData(state.quality.map(({ time, value, color }) => ({ time, value, color })));
  state.jobs = jobPoints();
  jobStrip.setData(state.jobs.map(({ time, value, color }) => ({ time, value, color })));
  const revisedMarks = [...state.revised.keys()]
    .filter((t) => state.bars.has(t))
    .map((t) => ({
      time: t,
      position: "aboveBar",
      shape: "circle",
      color: REVISED_COLOR,
      text: `v${Math.max(...state.revised.get(t).map((r) => r.versions))}`,
      id: `revised-${t}`,
    }));
  markers.setMarkers([...revisedMarks, ...actionMarks(times)].sort((a, b) => a.time - b.time));
  describe();
}

/** A mark under the first bar on or after each applied action's ex-date. */
function actionMarks(times) {
  const marks = [];
  for (const a of state.adjusted?.actions || []) {
    const ex = seconds(`${a.ex_date}T00:00:00Z`);
    const t = times.find((bar) => bar >= ex);
    if (t === undefined) continue;
    marks.push({ time: t, position: "belowBar", shape: "square", color: ACTION_COLOR, text: actionText(a), id: `action-${a.action_key}` });
  }
  return marks;
}

function actionText(a) {
  if (a.kind === "split") return `split ${a.split_ratio}:1`;
  if (a.kind === "dividend") return `dividend ${a.amount}${a.currency ? ` ${a.currency}` : ""}`;
  return a.kind;
}

function rememberRevised(rows) {
  const times = sortedTimes();
  state.revised = new Map();
  for (const r of rows) {
    const t = state.counted === state.interval ? seconds(r.ts) : chartBarAt(seconds(r.ts), times);
    if (t === null) continue;
    if (!state.revised.has(t)) state.revised.set(t, []);
    state.revised.get(t).push(r);
  }
}

/** Read the bars and their quality; `fit`: show them all (a reload for live data keeps the view). */
async function load({ fit = true } = {}) {
  $("error").hidden = true;
  const page = await getJson(`/stocks/${SYMBOL}/history`, {
    interval: state.interval,
    end: state.end,
    limit: LIMIT,
    adjustment: ADJUSTMENTS.length && state.adjustment !== "raw" ? state.adjustment : null,
  });
  state.adjusted = page.adjustment || null;
  state.bars = new Map(page.bars.map((b) => [seconds(b.ts), b]));
  state.counted = page.built_from || page.interval;
  const times = sortedTimes();
  const nowS = Math.floor(Date.now() / 60000) * 60; // whole minutes
  const endS = state.end ? seconds(state.end) : nowS;
  // quality over the span of the bars shown (without bars: the week before `end`)
  const hi = times.length ? Math.min(times[times.length - 1] + stepOf(state.interval), endS, nowS) : endS;
  const maxSpan = (state.counted === "1d" ? 366 : 93) * DAY;
  const lo = Math.max(times.length ? times[0] : hi - 7 * DAY, hi - maxSpan);
  const coverage = await getJson(`/stocks/${SYMBOL}/coverage`, {
    interval: state.interval,
    start: isoOf(lo),
    end: isoOf(hi),
  });
  state.counted = coverage.counted;
  state.ranges = coverage.ranges;
  state.coverage = coverage;
  state.coverageWindow = [lo, hi];
  rememberRevised(coverage.revised);
  draw();
  if (fit) {
    chart.timeScale().fitContent();
    announce(`Showing ${times.length} ${state.interval} bars.`);
  }
  subscribe();
}

// ----------------------------------------------------------------------------------------------
// the live feed

function connect() {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  state.ws = ws;
  ws.onopen = () => {
    setConnection("Live feed: connected");
    subscribe();
  };
  ws.onmessage = (event) => onMessage(JSON.parse(event.data));
  ws.onclose = () => {
    subscribed = null;
    state.live = null;
    setConnection("Live feed: disconnected, reconnecting in 3 s");
    state.ws = null;
    setTimeout(connect, 3000);
  };
}

function setConnection(text) {
  $("connection").textContent = text;
}

let subscribed = null;
function subscribe() {
  const ws = state.ws;
  if (!ws || ws.readyState !== WebSocket.OPEN || !state.counted) return;
  // live bars are stored bars: a built interval follows the interval it is built from
  const live = STORED.includes(state.interval) ? state.interval : state.counted;
  if (subscribed === live) return;
  state.live = null;
  ws.send(JSON.stringify({ action: "unsubscribe", all: true }));
  ws.send(JSON.stringify({ action: "subscribe", bars: [SYMBOL], intervals: [live], id: "page" }));
  subscribed = live;
}

function onMessage(m) {
  if (m.type === "subscribed" && m.id === "page") {
    state.live = subscribed;
    setConnection(`Live feed: following ${SYMBOL} ${subscribed} bars`);
  } else if (m.type === "resync") {
    scheduleReload();
  } else if (m.type === "bar" && m.symbol === SYMBOL) {
    if (m.interval === state.interval) applyLiveBar(m);
    else if (m.interval === state.counted) scheduleReload();
  } else if (m.type === "error") {
    showError(`Live feed: ${m.detail}`);
  }
}

function applyLiveBar(m) {
  const t = seconds(m.ts);
  const times = sortedTimes();
  // only bars inside the window shown: a backfill of older bars does not join the chart
  if ((times.length && t < times[0]) || (state.end && t >= seconds(state.end))) return;
  // live bars are raw: one before an applied action's ex-date is read again, adjusted
  if ((state.adjusted?.actions || []).some((a) => t < seconds(`${a.ex_date}T00:00:00Z`))) {
    scheduleReload();
    return;
  }
  const isNew = !state.bars.has(t);
  state.bars.set(t, { ...m, complete: true, base_bars: null });
  if (m.revision) {
    state.revised.set(t, [{ ts: m.ts, versions: m.version, first_as_of: m.previous_as_of, as_of: m.as_of }]);
  }
  // a bar that arrives is stored: drop it from the ranges not stored
  state.ranges = state.ranges.flatMap((r) => splitRange(r, t));
  draw();
  announce(`${isNew ? "New" : "Updated"} bar ${label(t)} from ${m.provider}${m.revision ? ` (version ${m.version})` : ""}`);
}

/** A range without the bar starting at t (0, 1 or 2 ranges). */
function splitRange(r, t) {
  const step = stepOf(state.counted);
  const start = seconds(r.start);
  const k = (t - start) / step;
  if (!Number.isInteger(k) || k < 0 || k >= r.bars) return [r];
  const out = [];
  if (k > 0) out.push({ ...r, end: isoOf(t), bars: k });
  if (k < r.bars - 1) out.push({ ...r, start: isoOf(t + step), bars: r.bars - k - 1 });
  return out;
}

function scheduleReload() {
  clearTimeout(state.reloadTimer);
  state.reloadTimer = setTimeout(() => load({ fit: false }).catch(showError), 1000);
}

// ----------------------------------------------------------------------------------------------
// text: summary, lists, table, tooltip, versions

/** Say it in the status line (a polite live region), after the state of the feed. */
function announce(text) {
  const feed = state.live ? `Live feed: following ${SYMBOL} ${state.live} bars.` : "Live feed: connecting…";
  setConnection(`${feed} ${text}`);
}

function describe() {
  const times = sortedTimes();
  const totals = state.coverage ? state.coverage.totals : null;
  const counts = {};
  for (const b of state.bars.values()) counts[b.provider] = (counts[b.provider] || 0) + 1;
  const parts = [
    `${times.length} ${state.interval} bars`,
    times.length ? `from ${label(times[0])} to ${label(times[times.length - 1])} UTC` : "",
    state.counted !== state.interval ? `(built from ${state.counted})` : "",
  ];
  const lines = [`<p>${parts.filter(Boolean).join(" ")}.</p>`];
  if (totals && state.coverageWindow) {
    const [lo, hi] = state.coverageWindow;
    const n = (k) => state.ranges.filter((r) => r.state === k).reduce((s, r) => s + r.bars, 0);
    lines.push(
      `<p>Quality from ${label(lo)} to ${label(hi)} UTC, in ${state.counted} bars: ` +
        `${totals.expected} expected, <span data-count="missing">${n("missing")}</span> missing, ` +
        `<span data-count="queued">${n("queued")}</span> queued for backfill, ` +
        `<span data-count="confirmed_empty">${n("confirmed_empty")}</span> confirmed empty, ` +
        `<span data-count="revised">${state.coverage.revised.length}${state.coverage.revised_truncated ? "+" : ""}</span> revised.</p>`,
    );
  }
  if (state.adjusted) {
    lines.push(
      `<p>Prices ${escapeHtml(ADJUSTMENT_TEXT[state.adjusted.mode] || state.adjusted.mode)}: ` +
        `<span data-count="actions">${state.adjusted.actions.length}</span> corporate action(s) applied ` +
        `(set ${escapeHtml(state.adjusted.id)}).</p>`,
    );
  } else if (ADJUSTMENTS.length) {
    lines.push("<p>Prices raw, as traded.</p>");
  }
  lines.push(
    `<p>Providers: ${Object.entries(counts).map(([p, c]) => `${escapeHtml(p)} (${c} bars)`).join(", ") || "none"}.</p>`,
  );
  $("summary").innerHTML = lines.join("");
  drawLegend(counts);
  listRevised();
  listRanges();
  listBackfills();
  listActions();
  fillTable(times);
}

function drawLegend(counts) {
  const items = [
    [UP_COLOR, "up bar"],
    [DOWN_COLOR, "down bar"],
    ...Object.keys(STATE_COLOR).map((k) => [STATE_COLOR[k], STATE_TEXT[k]]),
    [REVISED_COLOR, "revised (mark vN: N versions)"],
    [JOB_COLOR, "in a queued or running backfill job (top strip)"],
    ...(state.adjusted ? [[ACTION_COLOR, "corporate action applied (mark at its ex-date)"]] : []),
    ...Object.keys(counts).map((p) => [providerColor(p), `provider ${p} (bottom strip)`]),
  ];
  $("legend").innerHTML = items
    .map(([c, t]) => `<li><span class="swatch" style="background:${c}"></span>${escapeHtml(t)}</li>`)
    .join("");
}

function listRevised() {
  const ul = $("revised");
  ul.replaceChildren();
  const times = [...state.revised.keys()].sort((a, b) => a - b);
  if (!times.length) ul.innerHTML = "<li>None.</li>";
  for (const t of times) {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "revised-bar";
    button.dataset.time = String(t);
    const n = Math.max(...state.revised.get(t).map((r) => r.versions));
    button.textContent = `${label(t)} UTC: ${n} versions`;
    button.addEventListener("click", () => showVersions(t));
    li.append(button);
    ul.append(li);
  }
}

function listRanges() {
  const ul = $("ranges");
  ul.replaceChildren();
  if (!state.ranges.length) ul.innerHTML = "<li>None: every expected bar is stored.</li>";
  for (const r of state.ranges.slice(0, 200)) {
    const li = document.createElement("li");
    li.dataset.state = r.state;
    li.textContent = `${label(seconds(r.start))} to ${label(seconds(r.end))} UTC: ${r.bars} ${state.counted} bars ${STATE_TEXT[r.state]}`;
    ul.append(li);
  }
  if (state.ranges.length > 200) {
    const li = document.createElement("li");
    li.textContent = `… and ${state.ranges.length - 200} more ranges`;
    ul.append(li);
  }
}

function listBackfills() {
  const ul = $("backfills");
  ul.replaceChildren();
  const jobs = state.coverage?.backfills || [];
  if (!jobs.length) ul.innerHTML = "<li>None.</li>";
  for (const j of jobs) {
    const li = document.createElement("li");
    li.dataset.status = j.status;
    li.textContent = `${label(seconds(j.start))} to ${label(seconds(j.end))} UTC: ${j.status} (${j.source})`;
    ul.append(li);
  }
}

function listActions() {
  const ul = $("actions");
  ul.replaceChildren();
  const actions = state.adjusted?.actions || [];
  if (!actions.length) ul.innerHTML = state.adjusted ? "<li>None known.</li>" : "<li>None: prices are raw.</li>";
  for (const a of actions) {
    const li = document.createElement("li");
    li.textContent = `${a.ex_date}: ${actionText(a)}, prices before it × ${a.price_factor}, volume × ${a.volume_factor} (${a.provider})`;
    ul.append(li);
  }
}

function fillTable(times) {
  const rows = times
    .slice()
    .reverse()
    .map((t) => {
      const b = state.bars.get(t);
      const v = state.revised.has(t) ? Math.max(...state.revised.get(t).map((r) => r.versions)) : 1;
      return `<tr><th scope="row">${label(t)}</th><td>${b.open}</td><td>${b.high}</td><td>${b.low}</td><td>${b.close}</td>
        <td>${b.volume}</td><td>${escapeHtml(b.provider)}</td><td>${escapeHtml(b.as_of)}</td><td>${b.complete ? "yes" : "no"}</td><td>${v}</td></tr>`;
    });
  $("bars-table").tBodies[0].innerHTML = rows.join("");
}

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

async function showVersions(t) {
  const rows = state.revised.get(t) || [];
  const section = $("versions");
  const body = $("versions-table").tBodies[0];
  body.innerHTML = "";
  const parts = [];
  for (const r of rows) {
    const v = await getJson(`/stocks/${SYMBOL}/versions`, { ts: r.ts, interval: state.counted });
    parts.push(
      ...v.versions.map(
        (x) =>
          `<tr><th scope="row">${escapeHtml(x.as_of)}</th><td>${escapeHtml(x.provider)}</td><td>${escapeHtml(x.status)}</td>` +
          `<td>${x.open}</td><td>${x.high}</td><td>${x.low}</td><td>${x.close}</td><td>${x.volume}</td><td>${x.policy_version ?? ""}</td></tr>`,
      ),
    );
  }
  body.innerHTML = parts.join("");
  $("versions-table").caption.textContent = `Versions of the ${state.counted} bar${rows.length > 1 ? "s" : ""} ${rows
    .map((r) => r.ts)
    .join(", ")}, oldest first`;
  section.hidden = false;
  section.focus();
}

chart.subscribeClick((param) => {
  if (param.time !== undefined && state.revised.has(param.time)) showVersions(param.time).catch(showError);
});

chart.subscribeCrosshairMove((param) => {
  const tip = $("tooltip");
  if (param.time === undefined || !param.point) {
    tip.hidden = true;
    return;
  }
  const b = state.bars.get(param.time);
  const q = (state.quality || []).find((p) => p.time === param.time);
  const lines = [`${label(param.time)} UTC`];
  if (b) {
    lines.push(`O ${b.open}  H ${b.high}  L ${b.low}  C ${b.close}  V ${b.volume}`);
    lines.push(`provider ${b.provider}, as_of ${b.as_of}${b.complete === false ? ", incomplete" : ""}`);
  }
  if (q) lines.push(STATE_TEXT[q.state]);
  const job = (state.jobs || []).find((p) => p.time === param.time);
  if (job) lines.push(`in a ${job.status} backfill job`);
  if (state.revised.has(param.time)) lines.push("revised: click for its versions");
  tip.textContent = lines.join("\n");
  tip.hidden = false;
  const width = tip.offsetWidth;
  const right = param.point.x + 12 + width <= $("chart").clientWidth;
  tip.style.left = `${right ? param.point.x + 12 : Math.max(0, param.point.x - 12 - width)}px`;
  tip.style.top = `${param.point.y + 12}px`;
});

function showError(e) {
  $("error").textContent = String(e.message || e);
  $("error").hidden = false;
}

// ----------------------------------------------------------------------------------------------
// controls

function setUp() {
  const select = $("interval");
  const options = [...new Set([...STORED, ...TIMEFRAMES])].sort((a, b) => stepOf(a) - stepOf(b));
  for (const tf of options) {
    const o = document.createElement("option");
    o.value = tf;
    o.textContent = STORED.includes(tf) ? `${tf} (stored)` : `${tf} (built)`;
    select.append(o);
  }
  const params = new URLSearchParams(location.search);
  state.interval = params.get("interval") || STORED[0] || "1m";
  if (!options.includes(state.interval)) {
    const o = document.createElement("option");
    o.value = o.textContent = state.interval;
    select.append(o);
  }
  select.value = state.interval;
  const adjustment = $("adjustment");
  for (const a of ADJUSTMENTS) {
    const o = document.createElement("option");
    o.value = a;
    o.textContent = ADJUSTMENT_TEXT[a] || a;
    adjustment.append(o);
  }
  state.adjustment = params.get("adjustment") || "raw";
  if (!ADJUSTMENTS.length) {
    adjustment.hidden = true;
    $("adjustment").labels[0].hidden = true;
  } else {
    if (!ADJUSTMENTS.includes(state.adjustment)) {
      const o = document.createElement("option");
      o.value = o.textContent = state.adjustment;
      adjustment.append(o);
    }
    adjustment.value = state.adjustment;
  }
  state.end = params.get("end");
  if (state.end) $("end").value = state.end.replace("Z", "").slice(0, 16);
  $("controls").addEventListener("submit", (event) => {
    event.preventDefault();
    state.interval = select.value;
    state.adjustment = adjustment.value || "raw";
    state.end = $("end").value ? `${$("end").value}:00Z` : null;
    const url = new URL(location.href);
    url.searchParams.set("interval", state.interval);
    if (state.adjustment !== "raw") url.searchParams.set("adjustment", state.adjustment);
    else url.searchParams.delete("adjustment");
    if (state.end) url.searchParams.set("end", state.end);
    else url.searchParams.delete("end");
    history.replaceState(null, "", url);
    state.revised = new Map();
    load().catch(showError);
  });
  $("versions-close").addEventListener("click", () => {
    $("versions").hidden = true;
    $("interval").focus();
  });
}

setUp();
window.mdQualityPage = { chart, candles, markers, state, ready: load().then(() => true, (e) => (showError(e), false)) };
connect();
