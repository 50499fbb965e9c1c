// The live dashboard: symbol picker, chart, snapshot and last trades of one stream.
//
// Data flow: WebSocket frames are only parsed and buffered in `onmessage`; one
// requestAnimationFrame callback drains the buffer and updates the chart, snapshot and table
// together, so the page does the same work at 10 or 10,000 trades per second.
// On every (re)connect the socket opens first and buffers, then /history seeds the chart, so no
// trade falls in the gap between the two (duplicates are dropped by trade_id and time).

import { PriceChart, formatClock, formatPrice, priceDecimals } from "/static/chart.js";

const params = new URLSearchParams(location.search);
const numberParam = (name, fallback) => {
  const value = Number(params.get(name));
  return Number.isFinite(value) && value > 0 ? value : fallback;
};
const CONFIG = {
  maxPoints: numberParam("points", 2000),
  historyLimit: Math.min(1000, numberParam("history", 500)),
  tableRows: 50,
  staleAfterMs: numberParam("stale", 10) * 1000,
  backoffBaseMs: 500,
  backoffMaxMs: 10_000,
  symbolsRefreshMs: 15_000,
};

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
};

const state = {
  selection: null, // {exchange, symbol}
  socket: null,
  generation: 0, // bumps on every connect/switch; events of older sockets are ignored
  seeding: false,
  seedBuffer: [],
  pending: [], // frames received since the last animation frame
  recent: [], // the last tableRows trades, oldest first
  latest: null,
  connection: "connecting",
  lastFrameAt: 0,
  attempt: 0,
  retryTimer: null,
  retryAt: 0,
  frameRequested: false,
  directionAt: 0, // when the snapshot's up/down colour last changed
  viewReset: false, // chart/table/snapshot to be emptied on the next frame
  framesThisSecond: 0,
  rate: 0,
  symbols: [],
};

const chart = new PriceChart($("chart"), {
  maxPoints: CONFIG.maxPoints,
  onInvalidate: () => requestRender(),
});

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
    const added = appendRecent(batch);
    state.latest = batch[batch.length - 1];
    renderSnapshot();
    prependRows(added, before);
  }
  chart.draw();
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
  switch (state.connection) {
    case "reconnecting": {
      const s = Math.max(0, Math.ceil((state.retryAt - now) / 1000));
      return state.retryTimer ? `reconnecting · retry in ${s}s` : "reconnecting…";
    }
    case "stale":
      return `stale · no trades for ${Math.round((now - state.lastFrameAt) / 1000)}s`;
    default:
      return state.connection;
  }
}

// Once a second: stale detection, status text, trades/s, title. Cheap, not per trade.
setInterval(() => {
  const now = Date.now();
  if (state.connection === "live" && now - state.lastFrameAt > CONFIG.staleAfterMs) {
    setConnection("stale");
  }
  setConnection(state.connection, describeConnection());
  state.rate = state.framesThisSecond;
  state.framesThisSecond = 0;
  el.rate.textContent = state.selection ? `${state.rate} /s` : "—";
  if (state.latest) {
    document.title = `${formatPrice(state.latest.price)} ${state.latest.symbol} · tickpipe`;
  }
}, 1000);

// ---------------------------------------------------------------- WebSocket

function socketUrl(symbol) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws?symbols=${encodeURIComponent(symbol)}`;
}

function connect() {
  const sel = state.selection;
  if (!sel) return;
  const generation = ++state.generation;
  clearTimeout(state.retryTimer);
  state.retryTimer = null;
  closeSocket();
  if (state.connection !== "reconnecting") setConnection("connecting");

  let socket;
  try {
    socket = new WebSocket(socketUrl(sel.symbol));
  } catch {
    scheduleReconnect(generation);
    return;
  }
  state.socket = socket;
  state.seeding = true;
  state.seedBuffer = [];

  socket.onopen = () => {
    if (generation !== state.generation) return;
    state.lastFrameAt = Date.now();
    setConnection("live");
    seed(sel, generation);
  };
  socket.onmessage = (event) => {
    if (generation !== state.generation) return;
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      return;
    }
    if (!frame || frame.type !== "trade" || frame.symbol !== sel.symbol) return;
    if (frame.exchange !== sel.exchange) return; // /ws filters by symbol only
    state.lastFrameAt = Date.now();
    state.framesThisSecond += 1;
    state.attempt = 0; // a healthy stream resets the backoff
    if (state.connection !== "live") setConnection("live");
    if (state.seeding) {
      state.seedBuffer.push(frame);
      return;
    }
    state.pending.push(frame);
    // A hidden tab gets no animation frames: keep only what the chart and table can show.
    if (state.pending.length > CONFIG.maxPoints * 2) {
      state.pending = state.pending.slice(state.pending.length - CONFIG.maxPoints);
    }
    requestRender();
  };
  socket.onclose = () => {
    if (generation !== state.generation) return;
    state.socket = null;
    scheduleReconnect(generation);
  };
}

function closeSocket() {
  const socket = state.socket;
  state.socket = null;
  if (socket) {
    socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
    try {
      socket.close(1000);
    } catch {
      /* already closed */
    }
  }
}

/** Exponential backoff with jitter, so a restarted server is not hit by every tab at once. */
function scheduleReconnect(generation) {
  if (generation !== state.generation) return;
  state.attempt += 1;
  const ceiling = Math.min(CONFIG.backoffMaxMs, CONFIG.backoffBaseMs * 2 ** (state.attempt - 1));
  const delay = ceiling / 2 + Math.random() * (ceiling / 2);
  state.retryAt = Date.now() + delay;
  state.retryTimer = setTimeout(connect, delay);
  setConnection("reconnecting", describeConnection());
}

// A network coming back is a better hint than any timer.
window.addEventListener("online", () => {
  if (state.connection === "reconnecting") connect();
});

async function fetchJson(path) {
  const response = await fetch(path, { cache: "no-store" });
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

/** Replaces chart and table with /history, then with what the socket buffered meanwhile. */
async function seed(sel, generation) {
  const query = `exchange=${encodeURIComponent(sel.exchange)}`;
  const symbol = encodeURIComponent(sel.symbol);
  let stored = [];
  try {
    stored = await fetchJson(`/api/v1/history/${symbol}?limit=${CONFIG.historyLimit}&${query}`);
  } catch {
    // Live data still flows; the chart just starts empty.
  }
  if (generation !== state.generation) return;
  fetchJson(`/api/v1/snapshot/${symbol}?${query}`)
    .then((snap) => {
      if (snap && snap.window) el.legendSma.textContent = `SMA ${snap.window}`;
    })
    .catch(() => {});

  const seeded = Array.isArray(stored) ? stored.slice().reverse() : [];
  // trade_id alone may repeat over time (a restarted simulated market counts from 1 again).
  const key = (t) => `${t.trade_id}@${t.timestamp}`;
  const seen = new Set(seeded.map(key));
  const fresh = state.seedBuffer.filter((t) => !seen.has(key(t)));
  state.seeding = false;
  state.seedBuffer = [];
  chart.clear();
  state.recent = [];
  state.latest = null;
  state.pending = seeded.concat(fresh, state.pending);
  state.viewReset = true;
  requestRender();
}

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
  state.attempt = 0;
  state.pending = [];
  state.recent = [];
  state.latest = null;
  el.legendSma.textContent = "SMA";
  chart.clear();
  state.viewReset = true;
  requestRender();
  setConnection("connecting");
  connect();
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

// ---------------------------------------------------------------- start

const fromHash = parseKey(hashKey());
if (fromHash && fromHash.exchange) select(fromHash);
renderSnapshot();
requestRender();
loadSymbols();
