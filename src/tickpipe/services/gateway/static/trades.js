// The latest trade of the selected stream (price, SMA, distance from it, signal, time) and the
// table of its last trades.

import { formatClock, formatPrice, priceDecimals } from "/static/plot.js";

const DIRECTION_MS = 250;
const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
const esc = (value) => String(value).replace(/[&<>"']/g, (c) => ESCAPES[c]);
const $ = (id) => document.getElementById(id);

function formatQuantity(q) {
  if (q === null || q === undefined || !Number.isFinite(q)) return "—";
  const decimals = q >= 100 ? 2 : q >= 1 ? 4 : 6; // fits the column: 100.000000 did not
  return q.toLocaleString("en-US", { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
}

export class TradesPanel {
  constructor({ tableRows }) {
    this.tableRows = tableRows;
    this.selection = null;
    this.recent = []; // the last tableRows trades, oldest first
    this.latest = null;
    this.directionAt = 0; // when the price's up/down colour last changed
    this.el = {
      snapshot: $("snapshot"),
      symbol: $("snapshot-symbol"),
      exchange: $("snapshot-exchange"),
      price: $("snapshot-price"),
      sma: $("snapshot-sma"),
      spread: $("snapshot-spread"),
      signal: $("snapshot-signal"),
      time: $("snapshot-time"),
      tbody: document.querySelector("#trades tbody"),
      count: $("trades-count"),
    };
  }

  /** Empties snapshot and table (another stream, or the same one seeded again). */
  reset(selection) {
    this.selection = selection;
    this.recent = [];
    this.latest = null;
    this.el.tbody.textContent = "";
    this.el.count.textContent = "";
    this.renderSnapshot();
  }

  /** New trades, oldest first. */
  push(batch) {
    if (!batch.length) return;
    const before = this.recent[this.recent.length - 1] ?? null;
    const added = this.appendRecent(batch);
    this.latest = batch[batch.length - 1];
    this.renderSnapshot();
    this.prependRows(added, before);
  }

  /** Keeps the newest tableRows trades; returns those of `batch` that make it into the table. */
  appendRecent(batch) {
    const keep = this.tableRows;
    const tail = batch.length > keep ? batch.slice(batch.length - keep) : batch;
    this.recent = this.recent.concat(tail);
    if (this.recent.length > keep) this.recent = this.recent.slice(this.recent.length - keep);
    return tail;
  }

  renderSnapshot() {
    const { el } = this;
    const t = this.latest;
    const sel = this.selection;
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
    const recent = this.recent;
    const before = recent.length > 1 ? recent[recent.length - 2].price : t.price;
    if (t.price !== before && now - this.directionAt >= DIRECTION_MS) {
      el.price.dataset.direction = t.price > before ? "up" : "down";
      this.directionAt = now;
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

  /**
   * New trades go on top as one fragment and the oldest rows leave as one range: two DOM
   * operations per animation frame whatever the rate, and existing rows are never re-parsed.
   */
  prependRows(trades, before) {
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
    const tbody = this.el.tbody;
    tbody.prepend(template.content);
    const rows = tbody.rows;
    if (rows.length > this.tableRows) {
      const range = document.createRange();
      range.setStartBefore(rows[this.tableRows]);
      range.setEndAfter(tbody.lastChild);
      range.deleteContents();
    }
    this.el.count.textContent = `last ${rows.length}`;
  }
}
