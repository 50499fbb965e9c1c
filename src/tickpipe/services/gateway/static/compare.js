// One asset on two venues: both price lines on one time axis, and below them their spread.
//
// The spread at any time is the second stream's last price minus the first's ("as of" both
// latest trades at that time), in quote units and in basis points of the first.

import {
  COLORS,
  FONT,
  PAD,
  drawCrosshair,
  drawTag,
  drawTimeGrid,
  drawTooltip,
  drawValueGrid,
  drawWaiting,
  fitCanvas,
  formatClock,
  formatPrice,
  formatSigned,
  lowerBound,
  paddedRange,
  priceDecimals,
} from "/static/plot.js";
import { TimeViewport, enableInteraction } from "/static/viewport.js";

// Quote currencies, longest first so BTCUSDT is BTC/USDT, not BTCUSD/T.
const QUOTES = [
  "FDUSD", "USDT", "USDC", "BUSD", "TUSD", "USDP", "DAI", "USD", "EUR", "GBP", "JPY", "AUD",
  "CAD", "CHF", "TRY", "BRL", "BTC", "XBT", "ETH", "BNB",
].sort((a, b) => b.length - a.length);
const ALIASES = { XBT: "BTC", XDG: "DOGE" }; // Kraken's older names
const SPREAD_SHARE = 0.3; // of the plot height, for the spread pane
const PANE_GAP_PX = 22;
const MIN_SPAN_MS = 1000;

/** The base asset of a normalized symbol: BTCUSDT, BTCUSD, XBTUSD -> BTC; ETHBTC -> ETH. */
export function baseAsset(symbol) {
  let base = symbol;
  for (const quote of QUOTES) {
    if (symbol.endsWith(quote) && symbol.length - quote.length >= 2) {
      base = symbol.slice(0, symbol.length - quote.length);
      break;
    }
  }
  return ALIASES[base] ?? base;
}

/** The streams one can compare `selection` with: the same base asset, other venues first. */
export function comparable(selection, streams) {
  const base = baseAsset(selection.symbol);
  return streams
    .filter((s) => baseAsset(s.symbol) === base)
    .filter((s) => s.exchange !== selection.exchange || s.symbol !== selection.symbol)
    .sort(
      (a, b) =>
        (a.exchange === selection.exchange) - (b.exchange === selection.exchange) ||
        a.exchange.localeCompare(b.exchange) ||
        a.symbol.localeCompare(b.symbol),
    );
}

/** Price of `points` (sorted by t) as of time t: the last at or before it, or null. */
function asOf(points, t) {
  const i = lowerBound(points, t + 1) - 1;
  return i >= 0 ? points[i].price : null;
}

export class CompareChart {
  /**
   * @param {HTMLCanvasElement} canvas
   * @param {{first: () => object[], maxPoints?: number, onInvalidate?: () => void}} options
   *   first: the first stream's trades ({t, price}, oldest first), as the price chart keeps them.
   */
  constructor(canvas, { first, maxPoints = 2000, onInvalidate = () => {} }) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.first = first;
    this.maxPoints = maxPoints;
    this.onInvalidate = onInvalidate;
    this.second = []; // {t, price}, oldest first
    this.labels = ["", ""];
    this.hoverX = null;
    this.viewport = new TimeViewport();
    this.plot = { x0: 0, x1: 1 };
    this.range = null;
    enableInteraction(this, () => this.onInvalidate());
  }

  /** A new pair: labels of the two streams, the second one's trades start empty. */
  setPair(labels) {
    this.labels = labels;
    this.second = [];
    this.viewport.reset();
  }

  /** The second stream's trades (oldest first); `replace` for a (re)seed. */
  pushSecond(trades, replace = false) {
    if (replace) this.second = [];
    for (const t of trades) this.second.push({ t: t.timestamp, price: t.price });
    if (this.second.length > this.maxPoints * 1.25) {
      this.second = this.second.slice(this.second.length - this.maxPoints);
    }
  }

  /** The two last prices and their spread, or nulls while a stream has no trade yet. */
  latest() {
    const a = this.first().at(-1)?.price ?? null;
    const b = this.second.at(-1)?.price ?? null;
    const spread = a === null || b === null ? null : b - a;
    const bps = spread === null || !a ? null : (spread / a) * 1e4;
    return { a, b, spread, bps };
  }

  extent() {
    const a = this.first();
    const b = this.second;
    if (!a.length || !b.length) return null;
    const first = Math.min(a[0].t, b[0].t);
    const last = Math.max(a[a.length - 1].t, b[b.length - 1].t);
    const all = Math.max(last - first, MIN_SPAN_MS);
    return {
      first,
      liveEdge: last,
      defaultSpanMs: all,
      minSpanMs: Math.min(MIN_SPAN_MS, all),
      maxSpanMs: all,
      fitAll: true,
    };
  }

  /** The spread at every trade of either stream in [t0, t1] (both must have traded). */
  spreadPoints(a, b, t0, t1) {
    const times = [];
    for (const points of [a, b]) {
      const start = Math.max(0, lowerBound(points, t0) - 1);
      for (let i = start; i < points.length && points[i].t <= t1; i += 1) times.push(points[i].t);
    }
    times.sort((x, y) => x - y);
    const out = [];
    for (const t of times) {
      const pa = asOf(a, t);
      const pb = asOf(b, t);
      if (pa === null || pb === null || !pa) continue;
      out.push({ t, abs: pb - pa, bps: ((pb - pa) / pa) * 1e4 });
    }
    return out;
  }

  draw() {
    const { w, h } = fitCanvas(this.canvas, this.ctx);
    const ctx = this.ctx;
    ctx.clearRect(0, 0, w, h);
    ctx.font = FONT;
    const extent = this.extent();
    if (!extent || w < 50 || h < 120) {
      this.range = null;
      this.canvas.dataset.points = "0";
      drawWaiting(ctx, w, h, this.labels[1] ? `waiting for trades of both streams…` : "");
      return;
    }
    const a = this.first();
    const b = this.second;
    const { t0, t1 } = this.viewport.resolve(extent);
    this.range = { t0, t1 };
    const visible = (points) =>
      points.slice(Math.max(0, lowerBound(points, t0) - 1), lowerBound(points, t1 + 1) + 1);
    const va = visible(a);
    const vb = visible(b);
    const spread = this.spreadPoints(a, b, t0, t1);
    this.canvas.dataset.points = String(va.length + vb.length);

    let lo = Infinity;
    let hi = -Infinity;
    for (const p of va.concat(vb)) {
      lo = Math.min(lo, p.price);
      hi = Math.max(hi, p.price);
    }
    ({ lo, hi } = paddedRange(lo, hi));
    let slo = 0; // the spread pane always shows zero
    let shi = 0;
    for (const s of spread) {
      slo = Math.min(slo, s.bps);
      shi = Math.max(shi, s.bps);
    }
    ({ lo: slo, hi: shi } = paddedRange(slo, shi));

    const decimals = priceDecimals(a[a.length - 1].price);
    const axisW = Math.ceil(ctx.measureText(formatPrice(hi, decimals)).width) + 20;
    const x0 = PAD.left;
    const x1 = w - axisW;
    const bottom = h - PAD.bottom;
    const spreadH = (bottom - PAD.top) * SPREAD_SHARE;
    const price = { y0: PAD.top, y1: bottom - spreadH - PANE_GAP_PX };
    const pane = { y0: bottom - spreadH, y1: bottom };
    this.plot = { x0, x1 };
    const xOf = (t) => x0 + ((t - t0) / (t1 - t0)) * (x1 - x0);
    const yPrice = (v) => price.y1 - ((v - lo) / (hi - lo)) * (price.y1 - price.y0);
    const ySpread = (v) => pane.y1 - ((v - slo) / (shi - slo)) * (pane.y1 - pane.y0);

    drawValueGrid(ctx, { x0, x1, ...price, lo, hi, format: formatPrice });
    drawTimeGrid(ctx, { x0, x1, ...price, t0, t1, labelY: null });
    const bpsFormat = (v, d) => `${formatSigned(v, Math.min(d, 2))}`;
    drawValueGrid(ctx, { x0, x1, ...pane, lo: slo, hi: shi, format: bpsFormat });
    drawTimeGrid(ctx, { x0, x1, ...pane, t0, t1 });

    ctx.save();
    ctx.beginPath();
    ctx.rect(x0, 0, x1 - x0, h);
    ctx.clip();
    this.line(ctx, va, COLORS.price, xOf, (p) => yPrice(p.price));
    this.line(ctx, vb, COLORS.other, xOf, (p) => yPrice(p.price));
    ctx.strokeStyle = COLORS.zero;
    ctx.setLineDash([2, 3]);
    ctx.beginPath();
    ctx.moveTo(x0, Math.round(ySpread(0)) + 0.5);
    ctx.lineTo(x1, Math.round(ySpread(0)) + 0.5);
    ctx.stroke();
    ctx.setLineDash([]);
    this.line(ctx, spread, COLORS.sma, xOf, (s) => ySpread(s.bps));
    ctx.restore();

    ctx.fillStyle = COLORS.axisText;
    ctx.textAlign = "left";
    ctx.textBaseline = "bottom";
    ctx.fillText(`spread, bps: ${this.labels[1]} − ${this.labels[0]}`, x0, pane.y0 - 4);
    const last = this.latest();
    drawTag(ctx, { x0, x1, w, y: yPrice(last.a), label: formatPrice(last.a, decimals),
      color: COLORS.price, dashed: false });
    drawTag(ctx, { x0, x1, w, y: yPrice(last.b), label: formatPrice(last.b, decimals),
      color: COLORS.other, dashed: false });
    if (spread.length) {
      const s = spread[spread.length - 1];
      drawTag(ctx, { x0, x1, w, y: ySpread(s.bps), label: formatSigned(s.bps, 2),
        color: COLORS.sma, dashed: false });
    }
    if (this.hoverX !== null && this.hoverX >= x0 && this.hoverX <= x1) {
      const t = t0 + ((this.hoverX - x0) / (x1 - x0)) * (t1 - t0);
      const pa = asOf(a, t);
      const pb = asOf(b, t);
      drawCrosshair(ctx, this.hoverX, price.y0, pane.y1);
      const gap = pa !== null && pb !== null ? pb - pa : null;
      drawTooltip(ctx, {
        x: this.hoverX,
        x1,
        y0: price.y0,
        lines: [
          formatClock(t, true),
          `${this.labels[0]}  ${formatPrice(pa, decimals)}`,
          `${this.labels[1]}  ${formatPrice(pb, decimals)}`,
          `spread  ${formatSigned(gap, decimals)}` +
            (gap === null || !pa ? "" : ` (${formatSigned((gap / pa) * 1e4, 2)} bps)`),
        ],
        colors: [undefined, COLORS.price, COLORS.other, COLORS.sma],
      });
    }
  }

  /** A stepped line: a price (and so the spread) holds until the next trade. */
  line(ctx, points, color, xOf, yOf) {
    if (!points.length) return;
    ctx.strokeStyle = color;
    ctx.lineWidth = 1.6;
    ctx.lineJoin = "round";
    ctx.beginPath();
    let prevY = null;
    for (const p of points) {
      const x = xOf(p.t);
      const y = yOf(p);
      if (prevY === null) ctx.moveTo(x, y);
      else {
        ctx.lineTo(x, prevY);
        ctx.lineTo(x, y);
      }
      prevY = y;
    }
    ctx.stroke();
  }
}
