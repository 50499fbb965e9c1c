// The live dashboard: symbol picker, three charts (price, candles, compare), snapshot and last
// trades of one stream.
//
// Data flow: WebSocket frames are only parsed and buffered as they come; one
// requestAnimationFrame callback drains the buffers and updates the charts, snapshot and table
// together, so the page does the same work at 10 or 10,000 trades per second. Only the chart on
// screen is drawn.

import { CandleChart, CandleSeries, INTERVALS_MS } from "/static/candles.js";
import { PriceChart } from "/static/chart.js";
import { CompareChart, baseAsset, comparable } from "/static/compare.js";
import { formatClock, formatPrice, formatSigned, priceDecimals } from "/static/plot.js";
import { TradeStream, fetchJson } from "/static/stream.js";

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
const VIEWS = ["price", "candles", "compare"];
const DEFAULT_INTERVAL = "1m";
const DIRECTION_MS = 250;

const $ = (id) => document.getElementById(id);
const el = {
  picker: $("symbol-picker"),
  status: $("status"),
  statusText: $("status-text"),
  snapshot: $("snapshot"),
  symbol: $("snapshot-symbol"),
  exchange: $("snapshot-exchange"),
  price: $("snapshot-price"),
  sma: $("snapshot-sma"),
  spread: $("snapshot-spread"),
  signal: $("snapshot-signal"),
  time: $("snapshot-time"),
  rate: $("snapshot-rate"),
  legendSma: $("legend-sma"),
  tbody: document.querySelector("#trades tbody"),
  tradesCount: $("trades-count"),
  tabs: [...document.querySelectorAll(".tabs [data-view]")],
  intervals: [...document.querySelectorAll("#intervals [data-interval]")],
  viewParts: [...document.querySelectorAll("[data-for]")],
  comparePicker: $("compare-picker"),
  compareStats: $("compare-stats"),
  compareEmpty: $("compare-empty"),
  compareA: $("compare-a-label"),
  compareB: $("compare-b-label"),
  compareAPrice: $("compare-a-price"),
  compareBPrice: $("compare-b-price"),
  compareSpread: $("compare-spread"),
  compareBps: $("compare-spread-bps"),
  backToLive: $("back-to-live"),
};

const state = {
  selection: null, // {exchange, symbol}
  stream: null, // TradeStream of the selection
  seq: 0, // live frames received from it so far; each frame carries its number as `seq`
  pending: [], // frames received since the last animation frame
  recent: [], // the last tableRows trades, oldest first
  latest: null,
  connection: "connecting",
  frameRequested: false,
  directionAt: 0, // when the snapshot's up/down colour last changed
  viewReset: false, // table/snapshot to be emptied on the next frame
  framesThisSecond: 0,
  symbols: [],
  view: VIEWS.includes(params.get("view")) ? params.get("view") : "price",
  interval: params.get("interval") in INTERVALS_MS ? params.get("interval") : DEFAULT_INTERVAL,
  candles: null, // the candle view's load: {key, series, fromSeq, buffer, olderLoading}
  candleLoads: 0, // completed reads of /api/v1/candles (the debug hook shows it)
  compareKey: params.get("vs") ?? "", // "exchange:symbol" of the second stream
  compareStream: null,
  pendingSecond: [],
};

const invalidate = () => requestRender();
const chart = new PriceChart($("chart"), { maxPoints: CONFIG.maxPoints, onInvalidate: invalidate });
const candleChart = new CandleChart($("candles"), { onInvalidate: invalidate });
const compareChart = new CompareChart($("compare"), {
  first: () => chart.kept(),
  maxPoints: CONFIG.maxPoints,
  onInvalidate: invalidate,
});
const charts = { price: chart, candles: candleChart, compare: compareChart };

// ---------------------------------------------------------------- rendering (once per frame)

function requestRender() {
  if (!state.frameRequested) {
    state.frameRequested = true;
    requestAnimationFrame(render);
  }
}

function render() {
  state.frameRequested = false;
  if (state.viewReset) {
    state.viewReset = false;
    el.tbody.textContent = "";
    el.tradesCount.textContent = "";
    renderSnapshot();
  }
  if (state.pending.length) {
    const batch = state.pending;
    state.pending = [];
    const before = state.recent[state.recent.length - 1] ?? null;
    chart.push(batch);
    feedCandles(batch);
    const added = appendRecent(batch);
    state.latest = batch[batch.length - 1];
    renderSnapshot();
    prependRows(added, before);
  }
  if (state.pendingSecond.length) {
    compareChart.pushSecond(state.pendingSecond);
    state.pendingSecond = [];
  }
  const active = charts[state.view];
  active.draw();
  el.backToLive.hidden = active.viewport.live || !active.range;
  if (state.view === "compare") renderCompareStats();
  if (state.view === "candles" && candleChart.wantsOlder()) loadOlderCandles();
}

/** Keeps the newest tableRows trades; returns those of `batch` that make it into the table. */
function appendRecent(batch) {
  const keep = CONFIG.tableRows;
  const tail = batch.length > keep ? batch.slice(batch.length - keep) : batch;
  state.recent = state.recent.concat(tail);
  if (state.recent.length > keep) state.recent = state.recent.slice(state.recent.length - keep);
  return tail;
}

function renderSnapshot() {
  const t = state.latest;
  const sel = state.selection;
  el.symbol.textContent = sel ? sel.symbol : "—";
  el.exchange.textContent = sel ? sel.exchange : "—";
  if (!t) {
    el.snapshot.dataset.symbol = "";
    el.snapshot.dataset.exchange = "";
    el.snapshot.dataset.tradeId = "";
    el.price.textContent = "—";
    el.price.dataset.value = "";
    el.price.dataset.direction = "";
    el.sma.textContent = "—";
    el.sma.dataset.value = "";
    el.spread.textContent = "—";
    el.spread.dataset.direction = "";
    el.signal.textContent = "—";
    el.signal.dataset.signal = "";
    el.time.textContent = "—";
    return;
  }
  const decimals = priceDecimals(t.price);
  el.snapshot.dataset.symbol = t.symbol;
  el.snapshot.dataset.exchange = t.exchange;
  el.snapshot.dataset.tradeId = String(t.trade_id);
  // Up/down against the previous trade, as in the table's top row, but re-coloured at most
  // every DIRECTION_MS: no red/green flicker at hundreds of trades per second.
  const now = performance.now();
  const before = state.recent.length > 1 ? state.recent[state.recent.length - 2].price : t.price;
  if (t.price !== before && now - state.directionAt >= DIRECTION_MS) {
    el.price.dataset.direction = t.price > before ? "up" : "down";
    state.directionAt = now;
  }
  el.price.textContent = formatPrice(t.price, decimals);
  el.price.dataset.value = String(t.price);
  el.sma.textContent = formatPrice(t.sma, decimals);
  el.sma.dataset.value = t.sma === null || t.sma === undefined ? "" : String(t.sma);
  if (t.sma === null || t.sma === undefined || t.sma === 0) {
    el.spread.textContent = "—";
    el.spread.dataset.direction = "";
  } else {
    const pct = ((t.price - t.sma) / t.sma) * 100;
    el.spread.textContent = `${pct >= 0 ? "+" : ""}${pct.toFixed(3)}%`;
    el.spread.dataset.direction = pct > 0 ? "up" : pct < 0 ? "down" : "";
  }
  el.signal.textContent = t.signal;
  el.signal.dataset.signal = t.signal;
  el.time.textContent = formatClock(t.timestamp, true);
  el.time.dateTime = new Date(t.timestamp).toISOString();
  el.time.title = new Date(t.timestamp).toISOString();
}

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
const esc = (value) => String(value).replace(/[&<>"']/g, (c) => ESCAPES[c]);

/**
 * New trades go on top as one fragment and the oldest rows leave as one range: two DOM
 * operations per animation frame whatever the rate, and existing rows are never re-parsed.
 */
function prependRows(trades, before) {
  const parts = [];
  for (let i = trades.length - 1; i >= 0; i -= 1) {
    const t = trades[i];
    const prev = i > 0 ? trades[i - 1].price : (before?.price ?? t.price);
    const dir = t.price > prev ? "up" : t.price < prev ? "down" : "flat";
    const decimals = priceDecimals(t.price);
    parts.push(
      `<tr data-symbol="${esc(t.symbol)}" data-exchange="${esc(t.exchange)}" ` +
        `data-trade-id="${esc(t.trade_id)}" class="${dir}">` +
        `<td>${formatClock(t.timestamp, true)}</td>` +
        `<td class="num price">${formatPrice(t.price, decimals)}</td>` +
        `<td class="num">${formatQuantity(t.quantity)}</td>` +
        `<td class="num hide-narrow">${formatPrice(t.sma, decimals)}</td>` +
        `<td><span class="pill" data-signal="${esc(t.signal)}">${esc(t.signal)}</span></td></tr>`,
    );
  }
  const template = document.createElement("template");
  template.innerHTML = parts.join("");
  el.tbody.prepend(template.content);
  const rows = el.tbody.rows;
  if (rows.length > CONFIG.tableRows) {
    const range = document.createRange();
    range.setStartBefore(rows[CONFIG.tableRows]);
    range.setEndAfter(el.tbody.lastChild);
    range.deleteContents();
  }
  el.tradesCount.textContent = `last ${rows.length}`;
}

function formatQuantity(q) {
  if (q === null || q === undefined || !Number.isFinite(q)) return "—";
  const decimals = q >= 1000 ? 2 : 6;
  return q.toLocaleString("en-US", { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
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
  if (state.connection === "live" && now - (state.stream?.lastFrameAt ?? now) > CONFIG.staleAfterMs) {
    setConnection("stale");
  }
  setConnection(state.connection, describeConnection());
  el.rate.textContent = state.selection ? `${state.framesThisSecond} /s` : "—";
  state.framesThisSecond = 0;
  if (state.latest) {
    document.title = `${formatPrice(state.latest.price)} ${state.latest.symbol} · tickpipe`;
  }
}, 1000);

// A network coming back is a better hint than any timer.
window.addEventListener("online", () => {
  for (const stream of [state.stream, state.compareStream]) {
    if (stream?.state === "reconnecting") stream.connect();
  }
});

function openStream(sel) {
  state.stream?.close();
  const stream = new TradeStream(sel, {
    historyLimit: CONFIG.historyLimit,
    backoffBaseMs: CONFIG.backoffBaseMs,
    backoffMaxMs: CONFIG.backoffMaxMs,
    onState: (connection) => {
      if (state.stream !== stream) return;
      setConnection(connection);
      setConnection(connection, describeConnection());
    },
    onSeed: (trades) => {
      if (state.stream !== stream) return;
      chart.clear();
      state.recent = [];
      state.latest = null;
      state.pending = trades; // stored trades carry no `seq`: the candles already count them
      state.viewReset = true;
      const query = `exchange=${encodeURIComponent(sel.exchange)}`;
      fetchJson(`/api/v1/snapshot/${encodeURIComponent(sel.symbol)}?${query}`)
        .then((snap) => {
          if (snap && snap.window) el.legendSma.textContent = `SMA ${snap.window}`;
        })
        .catch(() => {});
      if (state.view === "candles") loadCandles();
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

// ---------------------------------------------------------------- candles

function candlesPath(sel, interval, query) {
  const search = new URLSearchParams({ interval, exchange: sel.exchange, ...query });
  return `/api/v1/candles/${encodeURIComponent(sel.symbol)}?${search}`;
}

/**
 * Reads the candles of the selection and interval, then keeps them growing with live trades.
 * Frames received before the request went out are stored already (the processor publishes
 * after it writes), so only later ones are folded in.
 */
async function loadCandles() {
  const sel = state.selection;
  if (!sel) return;
  const key = `${sel.exchange}:${sel.symbol}/${state.interval}`;
  const series = new CandleSeries(state.interval);
  const load = { key, series, fromSeq: state.seq, buffer: [], olderLoading: false };
  candleChart.setSeries(series, { keepView: state.candles?.key === key });
  state.candles = load;
  requestRender();
  let list;
  try {
    list = await fetchJson(candlesPath(sel, state.interval, { limit: CONFIG.candleLimit }));
  } catch {
    if (state.candles === load) candleChart.message = "candles unavailable";
    return; // the stream's next seed (after a reconnect) reads them again
  }
  if (state.candles !== load) return;
  series.setStored(Array.isArray(list) ? list : []);
  const buffered = load.buffer;
  load.buffer = null;
  for (const trade of buffered) foldTrade(load, trade);
  state.candleLoads += 1;
  requestRender();
}

function feedCandles(batch) {
  const load = state.candles;
  if (!load) return;
  for (const trade of batch) {
    if ((trade.seq ?? 0) <= load.fromSeq) continue;
    if (load.buffer) load.buffer.push(trade);
    else foldTrade(load, trade);
  }
}

function foldTrade(load, trade) {
  const reread = load.series.addTrade(trade);
  if (reread !== null) rereadCandle(load, reread);
}

/** One closed candle, read again: what a live trade added to it may have been counted twice. */
async function rereadCandle(load, bucket) {
  const sel = state.selection;
  try {
    const only = { start: String(bucket), end: String(bucket), limit: "1" };
    const [candle] = await fetchJson(candlesPath(sel, load.series.interval, only));
    if (state.candles === load && candle && candle.timestamp === bucket) {
      load.series.replace(candle);
      requestRender();
    }
  } catch {
    // It stays marked provisional; the next load reads it anew.
  }
}

/** Panned left of the oldest candle: the page before it. */
async function loadOlderCandles() {
  const load = state.candles;
  if (!load || load.buffer || load.olderLoading) return;
  const first = load.series.candles[0];
  if (!first) return;
  load.olderLoading = true;
  try {
    const query = { end: String(first.t - 1), limit: CONFIG.candleLimit };
    const list = await fetchJson(candlesPath(state.selection, load.series.interval, query));
    if (state.candles === load) load.series.prependStored(Array.isArray(list) ? list : []);
  } catch {
    // Try again on the next pan.
  } finally {
    load.olderLoading = false;
    requestRender();
  }
}

// ---------------------------------------------------------------- compare

const label = (s) => `${s.exchange} ${s.symbol}`;

/** Follows the picked second stream, or the first one of the same asset on another venue. */
function syncCompare() {
  const sel = state.selection;
  const options = sel ? comparable(sel, state.symbols) : [];
  const picked = options.find((s) => keyOf(s) === state.compareKey) ?? options[0] ?? null;
  renderComparePicker(options, picked);
  el.compareStats.hidden = state.view !== "compare" || !picked;
  if (state.view !== "compare" || !picked) {
    closeCompare();
    el.compareEmpty.hidden = state.view !== "compare" || Boolean(picked);
    el.compareEmpty.textContent = sel
      ? `No other stream of ${baseAsset(sel.symbol)} yet. Follow several venues at once, e.g. ` +
        "TICKPIPE_SOURCE=binance,coinbase TICKPIPE_SYMBOLS=binance:BTCUSDT,coinbase:BTC-USD."
      : "";
    compareChart.setPair(sel ? [label(sel), ""] : ["", ""]);
    return;
  }
  el.compareEmpty.hidden = true;
  state.compareKey = keyOf(picked);
  writeUrl();
  const current = state.compareStream;
  if (current && keyOf(current.selection) === keyOf(picked)) return;
  closeCompare();
  compareChart.setPair([label(sel), label(picked)]);
  el.compareA.textContent = label(sel);
  el.compareB.textContent = label(picked);
  const stream = new TradeStream(picked, {
    historyLimit: CONFIG.historyLimit,
    backoffBaseMs: CONFIG.backoffBaseMs,
    backoffMaxMs: CONFIG.backoffMaxMs,
    onState: () => {},
    onSeed: (trades) => {
      if (state.compareStream !== stream) return;
      state.pendingSecond = [];
      compareChart.pushSecond(trades, true);
      requestRender();
    },
    onTrade: (frame) => {
      if (state.compareStream !== stream) return;
      state.pendingSecond.push(frame);
      requestRender();
    },
  });
  state.compareStream = stream;
  stream.connect();
}

function closeCompare() {
  state.compareStream?.close();
  state.compareStream = null;
  state.pendingSecond = [];
}

function renderComparePicker(options, picked) {
  const byExchange = new Map();
  for (const s of options) {
    if (!byExchange.has(s.exchange)) byExchange.set(s.exchange, []);
    byExchange.get(s.exchange).push(s);
  }
  const groups = [...byExchange].map(([exchange, list]) => {
    const group = document.createElement("optgroup");
    group.label = exchange;
    for (const s of list) group.append(new Option(s.symbol, keyOf(s)));
    return group;
  });
  if (!groups.length) groups.push(new Option("no other venue", ""));
  el.comparePicker.replaceChildren(...groups);
  el.comparePicker.disabled = options.length === 0;
  el.comparePicker.value = picked ? keyOf(picked) : "";
}

function renderCompareStats() {
  const { a, b, spread, bps } = compareChart.latest();
  const decimals = priceDecimals(a ?? b ?? 0);
  const show = (node, value, text) => {
    node.dataset.value = value === null ? "" : String(value);
    node.textContent = text;
  };
  show(el.compareAPrice, a, formatPrice(a, decimals));
  show(el.compareBPrice, b, formatPrice(b, decimals));
  show(el.compareSpread, spread, formatSigned(spread, decimals));
  show(el.compareBps, bps, formatSigned(bps, 2));
  const direction = spread > 0 ? "up" : spread < 0 ? "down" : "";
  el.compareSpread.dataset.direction = el.compareBps.dataset.direction = direction;
}

el.comparePicker.addEventListener("change", () => {
  state.compareKey = el.comparePicker.value;
  syncCompare();
});

// ---------------------------------------------------------------- views

function setView(view) {
  state.view = view;
  for (const tab of el.tabs) tab.setAttribute("aria-selected", String(tab.dataset.view === view));
  for (const part of el.viewParts) part.hidden = part.dataset.for !== view;
  for (const [name, c] of Object.entries(charts)) c.canvas.hidden = name !== view;
  for (const button of el.intervals) {
    button.setAttribute("aria-pressed", String(button.dataset.interval === state.interval));
  }
  if (view === "candles") {
    const key = state.selection ? `${keyOf(state.selection)}/${state.interval}` : null;
    if (!state.candles || state.candles.key !== key) {
      state.candles = null;
      candleChart.setSeries(null);
      if (state.stream?.seeded) loadCandles(); // else the stream's seed does it
    }
  } else {
    state.candles = null; // nothing to keep growing off screen; re-read on return
  }
  syncCompare();
  writeUrl();
  requestRender();
}

function writeUrl() {
  const query = new URLSearchParams(location.search);
  const set = (name, value) => (value ? query.set(name, value) : query.delete(name));
  set("view", state.view === "price" ? "" : state.view);
  set("interval", state.view === "candles" ? state.interval : "");
  set("vs", state.view === "compare" ? state.compareKey : "");
  const search = query.toString();
  history.replaceState(null, "", `${location.pathname}${search ? `?${search}` : ""}${location.hash}`);
}

for (const tab of el.tabs) tab.addEventListener("click", () => setView(tab.dataset.view));
for (const button of el.intervals) {
  button.addEventListener("click", () => {
    if (state.interval === button.dataset.interval && state.candles) return;
    state.interval = button.dataset.interval;
    state.candles = null;
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
  state.recent = [];
  state.latest = null;
  el.legendSma.textContent = "SMA";
  chart.clear();
  chart.viewport.reset();
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
      syncCompare();
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

// What the browser tests compare against the API; copies, so nothing here changes the page.
window.tickpipeDebug = Object.freeze({
  view: () => state.view,
  range: (name = state.view) => {
    const c = charts[name];
    return c.range ? { ...c.range, live: c.viewport.live, plot: { ...c.plot } } : null;
  },
  candles: () => ({
    interval: state.candles?.series.interval ?? null,
    loads: state.candleLoads,
    loading: Boolean(state.candles?.buffer),
    candles: state.candles?.series.snapshot() ?? [],
  }),
  compare: () => ({
    pair: state.compareStream ? [keyOf(state.selection), keyOf(state.compareStream.selection)] : null,
    ...compareChart.latest(),
  }),
});

// ---------------------------------------------------------------- start

const fromHash = parseKey(hashKey());
setView(state.view);
if (fromHash && fromHash.exchange) select(fromHash);
renderSnapshot();
requestRender();
loadSymbols();
