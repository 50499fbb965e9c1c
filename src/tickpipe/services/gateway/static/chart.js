// The trade chart: price line and area, SMA line, BUY/SELL markers where the signal changes,
// last-price tag, hover crosshair; zoom and pan on its time axis. No dependencies.
// The owner appends trades and calls draw() at most once per animation frame.

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
  lowerBound,
  nearestIndex,
  paddedRange,
  priceDecimals,
} from "/static/plot.js";
import { TimeViewport, enableInteraction } from "/static/viewport.js";

const MARKER_PX = 5;
const MIN_MARKER_GAP_PX = 3;
const GAP_MIN_MS = 1000; // a pause longer than this and GAP_FACTOR x the mean spacing
const GAP_FACTOR = 20; //   between two trades breaks the lines
const MIN_SPAN_MS = 1000;

export class PriceChart {
  /**
   * @param {HTMLCanvasElement} canvas
   * @param {{maxPoints?: number, onInvalidate?: () => void}} options
   *   onInvalidate: asks the owner for a redraw on the next animation frame (resize, hover, zoom).
   */
  constructor(canvas, { maxPoints = 2000, onInvalidate = () => {} } = {}) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.maxPoints = maxPoints;
    this.onInvalidate = onInvalidate;
    this.points = []; // {t: ms, price, sma: number|null, signal, marker: "BUY"|"SELL"|null}
    this.lastSignal = null;
    this.hoverX = null;
    this.markerCount = 0;
    this.viewport = new TimeViewport();
    this.plot = { x0: 0, x1: 1 };
    this.range = null; // {t0, t1} of the last draw
    enableInteraction(this, () => this.onInvalidate());
  }

  get size() {
    return this.points.length;
  }

  /** Drops the trades; the zoom stays (a reconnect reseeds the same stream). */
  clear() {
    this.points = [];
    this.lastSignal = null;
  }

  /** Appends trades (oldest first), marks signal changes, keeps the newest `maxPoints`. */
  push(trades) {
    for (const tr of trades) {
      const changed = this.lastSignal !== null && tr.signal !== this.lastSignal;
      const marker = changed && (tr.signal === "BUY" || tr.signal === "SELL") ? tr.signal : null;
      this.points.push({ t: tr.timestamp, price: tr.price, sma: tr.sma, signal: tr.signal, marker });
      this.lastSignal = tr.signal;
    }
    // Trim in chunks so the copy is amortized, not paid on every frame.
    if (this.points.length > this.maxPoints * 1.25) {
      this.points = this.points.slice(this.points.length - this.maxPoints);
    }
  }

  /** The kept trades (the newest maxPoints; the array may briefly hold a few more). */
  kept() {
    const n = this.points.length;
    return n > this.maxPoints ? this.points.slice(n - this.maxPoints) : this.points;
  }

  /** What zoom and pan may do (see TimeViewport): the kept trades, all of them by default. */
  extent() {
    const pts = this.kept();
    if (!pts.length) return null;
    const first = pts[0].t;
    const last = pts[pts.length - 1].t;
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

  draw() {
    const { w, h } = fitCanvas(this.canvas, this.ctx);
    const ctx = this.ctx;
    ctx.clearRect(0, 0, w, h);
    ctx.font = FONT;
    const extent = this.extent();
    if (!extent || w < 50 || h < 50) {
      this.canvas.dataset.points = "0";
      this.markerCount = 0;
      this.canvas.dataset.markers = "0";
      this.range = null;
      drawWaiting(ctx, w, h, "waiting for trades…");
      return;
    }
    const all = this.kept();
    const { t0, t1 } = this.viewport.resolve(extent);
    this.range = { t0, t1 };
    // One point beyond each edge, so the lines run to the border instead of stopping short.
    const first = lowerBound(all, t0);
    const end = lowerBound(all, t1 + 1);
    const pts = all.slice(Math.max(0, first - 1), Math.min(all.length, end + 1));
    this.canvas.dataset.points = String(end - first);
    if (!pts.length) {
      drawWaiting(ctx, w, h, "no trades in this range");
      return;
    }

    let lo = Infinity;
    let hi = -Infinity;
    for (const p of pts) {
      lo = Math.min(lo, p.price, p.sma ?? Infinity);
      hi = Math.max(hi, p.price, p.sma ?? -Infinity);
    }
    ({ lo, hi } = paddedRange(lo, hi));

    const shown = all[Math.max(0, Math.min(end, all.length) - 1)];
    const decimals = priceDecimals(shown.price);
    const axisW = Math.ceil(ctx.measureText(formatPrice(hi, decimals)).width) + 20;
    const x0 = PAD.left;
    const x1 = w - axisW;
    const y0 = PAD.top;
    const y1 = h - PAD.bottom;
    this.plot = { x0, x1 };
    const span = Math.max(t1 - t0, 1);
    const xOf = (t) => x0 + ((t - t0) / span) * (x1 - x0);
    const yOf = (v) => y1 - ((v - lo) / (hi - lo)) * (y1 - y0);

    const tagY = yOf(shown.price);
    drawValueGrid(ctx, { x0, x1, y0, y1, lo, hi, format: formatPrice, skipY: tagY });
    drawTimeGrid(ctx, { x0, x1, y0, y1, t0, t1: t0 + span });
    ctx.save();
    ctx.beginPath();
    ctx.rect(x0, y0 - 8, x1 - x0, y1 - y0 + 16);
    ctx.clip();
    this.drawSeries(ctx, pts, { xOf, yOf, y1 });
    this.drawMarkers(ctx, pts, { xOf, yOf });
    ctx.restore();
    const label = formatPrice(shown.price, decimals);
    drawTag(ctx, { x0, x1, w, y: tagY, label, color: COLORS.price });
    if (this.hoverX !== null && this.hoverX >= x0 && this.hoverX <= x1) {
      this.drawHover(ctx, pts, { x0, x1, y0, y1, xOf, yOf, t0, span, decimals });
    }
  }

  drawSeries(ctx, pts, { xOf, yOf, y1 }) {
    // An outage (server down, reconnect) leaves a hole in time: leave it in the lines too,
    // rather than a straight segment that looks like trades.
    const meanGapMs = (pts[pts.length - 1].t - pts[0].t) / Math.max(1, pts.length - 1);
    const breakAfterMs = Math.max(GAP_MIN_MS, meanGapMs * GAP_FACTOR);
    const segments = [];
    let start = 0;
    for (let i = 1; i <= pts.length; i += 1) {
      if (i === pts.length || pts[i].t - pts[i - 1].t > breakAfterMs) {
        segments.push(pts.slice(start, i));
        start = i;
      }
    }

    const grad = ctx.createLinearGradient(0, 0, 0, y1);
    grad.addColorStop(0, COLORS.areaTop);
    grad.addColorStop(1, COLORS.areaBottom);
    ctx.fillStyle = grad;
    ctx.beginPath();
    for (const seg of segments) {
      ctx.moveTo(xOf(seg[0].t), y1);
      for (const p of seg) ctx.lineTo(xOf(p.t), yOf(p.price));
      ctx.lineTo(xOf(seg[seg.length - 1].t), y1);
      ctx.closePath();
    }
    ctx.fill();

    ctx.lineJoin = "round";
    ctx.lineCap = "round";
    ctx.lineWidth = 1.6;
    ctx.strokeStyle = COLORS.price;
    ctx.beginPath();
    for (const seg of segments) {
      seg.forEach((p, i) => (i ? ctx.lineTo : ctx.moveTo).call(ctx, xOf(p.t), yOf(p.price)));
    }
    ctx.stroke();

    ctx.strokeStyle = COLORS.sma;
    ctx.beginPath();
    for (const seg of segments) {
      let pen = false;
      for (const p of seg) {
        if (p.sma === null || p.sma === undefined) {
          pen = false;
          continue;
        }
        if (pen) ctx.lineTo(xOf(p.t), yOf(p.sma));
        else ctx.moveTo(xOf(p.t), yOf(p.sma));
        pen = true;
      }
    }
    ctx.stroke();
  }

  drawMarkers(ctx, pts, { xOf, yOf }) {
    // At high rates the signal flips more often than there are pixels: draw at most one
    // marker of each kind per few pixels so they stay readable.
    const lastX = { BUY: -Infinity, SELL: -Infinity };
    let count = 0;
    for (const p of pts) {
      if (!p.marker) continue;
      const x = xOf(p.t);
      if (x - lastX[p.marker] < MIN_MARKER_GAP_PX) continue;
      lastX[p.marker] = x;
      const y = yOf(p.price);
      const s = MARKER_PX;
      ctx.beginPath();
      if (p.marker === "BUY") {
        ctx.moveTo(x, y + 4);
        ctx.lineTo(x - s, y + 4 + s * 1.6);
        ctx.lineTo(x + s, y + 4 + s * 1.6);
        ctx.fillStyle = COLORS.buy;
      } else {
        ctx.moveTo(x, y - 4);
        ctx.lineTo(x - s, y - 4 - s * 1.6);
        ctx.lineTo(x + s, y - 4 - s * 1.6);
        ctx.fillStyle = COLORS.sell;
      }
      ctx.closePath();
      ctx.fill();
      count += 1;
    }
    this.markerCount = count;
    this.canvas.dataset.markers = String(count);
  }

  drawHover(ctx, pts, { x0, x1, y0, y1, xOf, yOf, t0, span, decimals }) {
    const t = t0 + ((this.hoverX - x0) / (x1 - x0)) * span;
    const p = pts[nearestIndex(pts, t)];
    const x = xOf(p.t);
    drawCrosshair(ctx, x, y0, y1);
    ctx.fillStyle = COLORS.price;
    ctx.beginPath();
    ctx.arc(x, yOf(p.price), 3.5, 0, Math.PI * 2);
    ctx.fill();
    const signalColor =
      p.signal === "BUY" ? COLORS.buy : p.signal === "SELL" ? COLORS.sell : COLORS.axisText;
    drawTooltip(ctx, {
      x,
      x1,
      y0,
      lines: [
        formatClock(p.t, true),
        `price  ${formatPrice(p.price, decimals)}`,
        `sma    ${p.sma === null || p.sma === undefined ? "—" : formatPrice(p.sma, decimals)}`,
        `signal ${p.signal}`,
      ],
      colors: [undefined, undefined, undefined, signalColor],
    });
  }
}
