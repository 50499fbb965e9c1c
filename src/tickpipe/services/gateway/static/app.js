// The live dashboard: symbol picker, three charts (price, candles, compare), snapshot and last
// trades of one stream; this module wires them together.
//
// Data flow: WebSocket frames are only parsed and buffered as they come; one
// requestAnimationFrame callback drains the buffers and updates the charts, snapshot and table
// together, so the page does the same work at 10 or 10,000 trades per second. Only the chart on
// screen is drawn.

import { CandleFeed } from "/static/candlefeed.js";
import { CandleChart, INTERVALS_MS } from "/static/candles.js";
import { PriceChart } from "/static/chart.js";
import { CompareChart } from "/static/compare.js";
import { ComparePanel } from "/static/comparepanel.js";
import { formatPrice } from "/static/plot.js";
import { TradeStream, fetchJson } from "/static/stream.js";
import { TradesPanel } from "/static/trades.js";

const params = new URLSearchParams(location.search);
const numberParam = (name, fallback) => {
  const value = Number(params.get(name));
  return Number.isFinite(value) && value > 0 ? value : fallback;
};
const CONFIG = {
  maxPoints: numberParam("points", 2000),
  historyLimit: Math.min(1000, numberParam("history", 500)),
  candleLimit: Math.min(1000, numberParam("candles", 500)),
  tableRows: 50,
  staleAfterMs: numberParam("stale", 10) * 1000,
  backoffBaseMs: 500,
  backoffMaxMs: 10_000,
  symbolsRefreshMs: 15_000,
};
const STREAM_OPTIONS = {
  historyLimit: CONFIG.historyLimit,
  backoffBaseMs: CONFIG.backoffBaseMs,
  backoffMaxMs: CONFIG.backoffMaxMs,
};
const VIEWS = ["price", "candles", "compare"];
const DEFAULT_INTERVAL = "1m";

const $ = (id) => document.getElementById(id);
const el = {
  picker: $("symbol-picker"),
  status: $("status"),
  statusText: $("status-text"),
  rate: $("snapshot-rate"),
  legendSma: $("legend-sma"),
  tabs: [...document.querySelectorAll("#views [data-view]")],
  intervals: [...document.querySelectorAll("#intervals [data-interval]")],
  viewParts: [...document.querySelectorAll("[data-for]")],
  backToLive: $("back-to-live"),
};

const state = {
  selection: null, // {exchange, symbol}
  stream: null, // TradeStream of the selection
  seq: 0, // live frames received from it so far; each frame carries its number as `seq`
  pending: [], // its frames since the last animation frame
  connection: "connecting",
  frameRequested: false,
  viewReset: false, // snapshot and table to be emptied on the next frame
  framesThisSecond: 0,
  symbols: [],
  view: VIEWS.includes(params.get("view")) ? params.get("view") : "price",
  interval: params.get("interval") in INTERVALS_MS ? params.get("interval") : DEFAULT_INTERVAL,
};

const requestRender = () => {
  if (!state.frameRequested) {
    state.frameRequested = true;
    requestAnimationFrame(render);
  }
};
const trades = new TradesPanel({ tableRows: CONFIG.tableRows });
const priceChart = new PriceChart($("chart"), {
  maxPoints: CONFIG.maxPoints,
  onInvalidate: requestRender,
});
const candleChart = new CandleChart($("candles"), { onInvalidate: requestRender });
const compareChart = new CompareChart($("compare"), {
  first: () => priceChart.kept(),
  maxPoints: CONFIG.maxPoints,
  onInvalidate: requestRender,
});
const charts = { price: priceChart, candles: candleChart, compare: compareChart };
const candles = new CandleFeed(candleChart, { limit: CONFIG.candleLimit, onChange: requestRender });
const compare = new ComparePanel(compareChart, {
  wanted: params.get("vs") ?? "",
  streamOptions: STREAM_OPTIONS,
  onChange: requestRender,
  onPick: () => writeUrl(),
});

// ---------------------------------------------------------------- rendering (once per frame)

function render() {
  state.frameRequested = false;
  if (state.viewReset) {
    state.viewReset = false;
    trades.reset(state.selection);
  }
  if (state.pending.length) {
    const batch = state.pending;
    state.pending = [];
    priceChart.push(batch);
    candles.feed(batch);
    trades.push(batch);
  }
  compare.drain();
  const active = charts[state.view];
  active.draw();
  el.backToLive.hidden = active.viewport.live || !active.range;
  if (state.view === "compare") compare.renderStats();
  if (state.view === "candles") candles.loadOlder();
}

// ---------------------------------------------------------------- connection state

function setConnection(connection, text = connection) {
  if (state.connection !== connection) {
    state.connection = connection;
    el.status.dataset.state = connection;
    document.body.dataset.state = connection;
  }
  if (el.statusText.textContent !== text) el.statusText.textContent = text;
}

function describeConnection() {
  const now = Date.now();
  const stream = state.stream;
  switch (state.connection) {
    case "reconnecting": {
      const s = Math.max(0, Math.ceil(((stream?.retryAt ?? now) - now) / 1000));
      return stream?.retryTimer ? `reconnecting · retry in ${s}s` : "reconnecting…";
    }
    case "stale":
      return `stale · no trades for ${Math.round((now - (stream?.lastFrameAt ?? now)) / 1000)}s`;
    default:
      return state.connection;
  }
}

// Once a second: stale detection, status text, trades/s, title. Cheap, not per trade.
setInterval(() => {
  const now = Date.now();
  const quietMs = now - (state.stream?.lastFrameAt ?? now);
  if (state.connection === "live" && quietMs > CONFIG.staleAfterMs) setConnection("stale");
  setConnection(state.connection, describeConnection());
  el.rate.textContent = state.selection ? `${state.framesThisSecond} /s` : "—";
  state.framesThisSecond = 0;
  if (trades.latest) {
    document.title = `${formatPrice(trades.latest.price)} ${trades.latest.symbol} · tickpipe`;
  }
}, 1000);

// A network coming back is a better hint than any timer.
window.addEventListener("online", () => {
  for (const stream of [state.stream, compare.stream]) {
    if (stream?.state === "reconnecting") stream.connect();
  }
});

function openStream(sel) {
  state.stream?.close();
  const stream = new TradeStream(sel, {
    ...STREAM_OPTIONS,
    onState: (connection) => {
      if (state.stream !== stream) return;
      setConnection(connection);
      setConnection(connection, describeConnection());
    },
    onSeed: (seeded) => {
      if (state.stream !== stream) return;
      priceChart.clear();
      state.pending = seeded; // stored trades carry no `seq`: the candles count them already
      state.viewReset = true;
      const query = `exchange=${encodeURIComponent(sel.exchange)}`;
      fetchJson(`/api/v1/snapshot/${encodeURIComponent(sel.symbol)}?${query}`)
        .then((snap) => {
          if (snap && snap.window) el.legendSma.textContent = `SMA ${snap.window}`;
        })
        .catch(() => {});
      if (state.view === "candles") candles.load(sel, state.interval, state.seq);
      requestRender();
    },
    onTrade: (frame) => {
      if (state.stream !== stream) return;
      frame.seq = ++state.seq;
      state.framesThisSecond += 1;
      if (state.connection !== "live") setConnection("live");
      state.pending.push(frame);
      // A hidden tab gets no animation frames: keep only what the chart and table can show.
      if (state.pending.length > CONFIG.maxPoints * 2) {
        state.pending = state.pending.slice(state.pending.length - CONFIG.maxPoints);
      }
      requestRender();
    },
  });
  state.stream = stream;
  stream.connect();
}

// ---------------------------------------------------------------- views

function setView(view) {
  state.view = view;
  for (const tab of el.tabs) tab.setAttribute("aria-pressed", String(tab.dataset.view === view));
  for (const part of el.viewParts) part.hidden = part.dataset.for !== view;
  for (const [name, chart] of Object.entries(charts)) chart.canvas.hidden = name !== view;
  for (const button of el.intervals) {
    button.setAttribute("aria-pressed", String(button.dataset.interval === state.interval));
  }
  const sel = state.selection;
  if (view !== "candles" || !sel) candles.stop();
  else if (!candles.follows(sel, state.interval)) {
    candles.stop();
    if (state.stream?.seeded) candles.load(sel, state.interval, state.seq); // else the seed does
  }
  compare.sync({ selection: sel, symbols: state.symbols, active: view === "compare" });
  writeUrl();
  requestRender();
}

/** The view, interval and compared stream in the query; the stream itself in the hash. */
function writeUrl() {
  const query = new URLSearchParams(location.search);
  const set = (name, value) => (value ? query.set(name, value) : query.delete(name));
  set("view", state.view === "price" ? "" : state.view);
  set("interval", state.view === "candles" ? state.interval : "");
  set("vs", state.view === "compare" ? compare.wanted : "");
  const search = query.toString();
  history.replaceState(null, "", `${location.pathname}${search ? `?${search}` : ""}${location.hash}`);
}

for (const tab of el.tabs) tab.addEventListener("click", () => setView(tab.dataset.view));
for (const button of el.intervals) {
  button.addEventListener("click", () => {
    state.interval = button.dataset.interval;
    setView("candles");
  });
}
el.backToLive.addEventListener("click", () => {
  charts[state.view].viewport.goLive();
  requestRender();
});

// ---------------------------------------------------------------- symbols and selection

const keyOf = (sel) => `${sel.exchange}:${sel.symbol}`;

function hashKey() {
  try {
    return decodeURIComponent(location.hash.slice(1));
  } catch {
    return ""; // a mangled hand-typed URL: fall back to the default symbol
  }
}

function parseKey(key) {
  const [exchange, symbol] = key.includes(":") ? key.split(":", 2) : ["", key];
  return symbol ? { exchange, symbol: symbol.toUpperCase() } : null;
}

function select(sel) {
  if (state.selection && keyOf(state.selection) === keyOf(sel)) return;
  state.selection = sel;
  history.replaceState(null, "", `#${keyOf(sel)}`);
  el.picker.value = keyOf(sel);
  state.pending = [];
  el.legendSma.textContent = "SMA";
  priceChart.clear();
  priceChart.viewport.reset();
  state.viewReset = true;
  setConnection("connecting");
  openStream(sel);
  setView(state.view); // the candles and the compare pair follow the selection
}

function renderPicker() {
  const byExchange = new Map();
  for (const s of state.symbols) {
    if (!byExchange.has(s.exchange)) byExchange.set(s.exchange, []);
    byExchange.get(s.exchange).push(s.symbol);
  }
  const current = state.selection ? keyOf(state.selection) : "";
  const groups = [...byExchange.keys()].sort().map((exchange) => {
    const group = document.createElement("optgroup");
    group.label = exchange;
    for (const symbol of byExchange.get(exchange).sort()) {
      group.append(new Option(symbol, `${exchange}:${symbol}`));
    }
    return group;
  });
  // The picked stream may not be in the list yet (typed in the URL): keep it selectable.
  if (current && !state.symbols.some((s) => keyOf(s) === current)) {
    groups.push(new Option(`${state.selection.symbol} (${state.selection.exchange})`, current));
  }
  el.picker.replaceChildren(...groups);
  el.picker.disabled = groups.length === 0;
  el.picker.value = current;
}

let symbolsSignature = "";
let symbolsFailures = 0;

async function loadSymbols() {
  let delay = CONFIG.symbolsRefreshMs;
  try {
    const list = await fetchJson("/api/v1/symbols");
    const symbols = (Array.isArray(list) ? list : [])
      .filter((s) => s && s.symbol && s.exchange)
      .map((s) => ({ exchange: String(s.exchange), symbol: String(s.symbol) }));
    symbolsFailures = 0;
    const signature = symbols.map(keyOf).sort().join(",");
    if (signature !== symbolsSignature) {
      symbolsSignature = signature;
      state.symbols = symbols;
      renderPicker();
      compare.sync({ selection: state.selection, symbols, active: state.view === "compare" });
    }
    if (!state.selection && symbols.length) select(pickDefault(symbols));
    if (!symbols.length) delay = 1000; // a fresh server has seen no trades yet
  } catch {
    symbolsFailures += 1;
    delay = Math.min(CONFIG.backoffMaxMs, 1000 * 2 ** symbolsFailures);
  }
  setTimeout(loadSymbols, delay);
}

function pickDefault(symbols) {
  const sorted = symbols.slice().sort((a, b) => keyOf(a).localeCompare(keyOf(b)));
  return sorted.find((s) => s.symbol.startsWith("BTC")) ?? sorted[0];
}

el.picker.addEventListener("change", () => {
  const sel = parseKey(el.picker.value);
  if (sel) select(sel);
});

window.addEventListener("hashchange", () => {
  const sel = parseKey(hashKey());
  if (sel && sel.exchange) select(sel);
});

// ---------------------------------------------------------------- debug hook (read-only)

// What the browser tests compare with the API; copies, so nothing here changes the page.
window.tickpipeDebug = Object.freeze({
  view: () => state.view,
  range: (name = state.view) => {
    const chart = charts[name];
    const { range, viewport, plot } = chart;
    return range ? { ...range, live: viewport.live, plot: { ...plot } } : null;
  },
  candles: () => candles.debug(),
  compare: () => compare.debug(),
});

// ---------------------------------------------------------------- start

const fromHash = parseKey(hashKey());
setView(state.view);
if (fromHash && fromHash.exchange) select(fromHash);
trades.renderSnapshot();
requestRender();
loadSymbols();
