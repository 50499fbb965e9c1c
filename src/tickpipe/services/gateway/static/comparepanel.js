// The compare view's controls and second stream: the "vs" picker (other streams of the selected
// stream's base asset, other venues first), the second stream's socket, and the last prices and
// spread above the chart.

import { baseAsset, comparable } from "/static/compare.js";
import { formatPrice, formatSigned, priceDecimals } from "/static/plot.js";
import { TradeStream } from "/static/stream.js";

const $ = (id) => document.getElementById(id);
const keyOf = (s) => `${s.exchange}:${s.symbol}`;
const label = (s) => `${s.exchange} ${s.symbol}`;

export class ComparePanel {
  /**
   * @param {import("/static/compare.js").CompareChart} chart
   * @param {{wanted: string, streamOptions: object, onChange: () => void,
   *          onPick: (key: string) => void}} options
   *   wanted: "exchange:symbol" asked for (from the URL); onPick: the pair changed.
   */
  constructor(chart, { wanted, streamOptions, onChange, onPick }) {
    this.chart = chart;
    this.wanted = wanted;
    this.streamOptions = streamOptions;
    this.onChange = onChange;
    this.onPick = onPick;
    this.stream = null;
    this.pending = []; // the second stream's frames since the last animation frame
    this.context = { selection: null, symbols: [], active: false };
    this.el = {
      picker: $("compare-picker"),
      stats: $("compare-stats"),
      empty: $("compare-empty"),
      aLabel: $("compare-a-label"),
      bLabel: $("compare-b-label"),
      a: $("compare-a-price"),
      b: $("compare-b-price"),
      spread: $("compare-spread"),
      bps: $("compare-spread-bps"),
    };
    this.el.picker.addEventListener("change", () => {
      this.wanted = this.el.picker.value;
      this.sync(this.context);
    });
  }

  /** The pair for `selection` among `symbols`; a second stream only while the view is `active`. */
  sync({ selection, symbols, active }) {
    this.context = { selection, symbols, active };
    const options = selection ? comparable(selection, symbols) : [];
    const picked = options.find((s) => keyOf(s) === this.wanted) ?? options[0] ?? null;
    this.renderPicker(options, picked);
    this.el.stats.hidden = !active || !picked;
    this.el.empty.hidden = !active || Boolean(picked);
    this.el.empty.textContent = selection
      ? `No other stream of ${baseAsset(selection.symbol)} yet. Follow several venues at once, ` +
        "e.g. TICKPIPE_SOURCE=binance,coinbase TICKPIPE_SYMBOLS=binance:BTCUSDT,coinbase:BTC-USD."
      : "";
    if (!active || !picked) {
      this.close();
      this.chart.setPair(selection ? [label(selection), ""] : ["", ""]);
      return;
    }
    if (keyOf(picked) !== this.wanted) {
      this.wanted = keyOf(picked);
      this.onPick(this.wanted);
    }
    if (this.stream && keyOf(this.stream.selection) === this.wanted) return;
    this.close();
    this.chart.setPair([label(selection), label(picked)]);
    this.el.aLabel.textContent = label(selection);
    this.el.bLabel.textContent = label(picked);
    const stream = new TradeStream(picked, {
      ...this.streamOptions,
      onState: () => {},
      onSeed: (trades) => {
        if (this.stream !== stream) return;
        this.pending = [];
        this.chart.pushSecond(trades, true);
        this.onChange();
      },
      onTrade: (frame) => {
        if (this.stream !== stream) return;
        this.pending.push(frame);
        this.onChange();
      },
    });
    this.stream = stream;
    stream.connect();
  }

  close() {
    this.stream?.close();
    this.stream = null;
    this.pending = [];
  }

  /** Once per animation frame: the second stream's new trades to the chart. */
  drain() {
    if (!this.pending.length) return;
    this.chart.pushSecond(this.pending);
    this.pending = [];
  }

  renderPicker(options, picked) {
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
    this.el.picker.replaceChildren(...groups);
    this.el.picker.disabled = options.length === 0;
    this.el.picker.value = picked ? keyOf(picked) : "";
  }

  renderStats() {
    const { a, b, spread, bps } = this.chart.latest();
    const decimals = priceDecimals(a ?? b ?? 0);
    const show = (node, value, text) => {
      node.dataset.value = value === null ? "" : String(value);
      node.textContent = text;
    };
    show(this.el.a, a, formatPrice(a, decimals));
    show(this.el.b, b, formatPrice(b, decimals));
    show(this.el.spread, spread, formatSigned(spread, decimals));
    show(this.el.bps, bps, formatSigned(bps, 2));
    const direction = spread > 0 ? "up" : spread < 0 ? "down" : "";
    this.el.spread.dataset.direction = this.el.bps.dataset.direction = direction;
  }

  /** Copies for the page's debug hook. */
  debug() {
    const { selection } = this.context;
    const pair = this.stream && selection ? [keyOf(selection), keyOf(this.stream.selection)] : null;
    return { pair, ...this.chart.latest() };
  }
}
