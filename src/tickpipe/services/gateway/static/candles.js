// Candles: the series kept from /api/v1/candles plus live trades, and its chart.
//
// Buckets start at multiples of the interval since the Unix epoch, as on the server, so a live
// trade lands in the same candle the API would put it in. Stored candles come from the API; a
// live trade extends the last one or starts the next on the interval boundary. A trade that
// reaches a stored candle may already be counted in it (stored while the request was in flight),
// so that candle is marked provisional and read again, alone, once it has closed.

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
  formatDate,
  formatPrice,
  lowerBound,
  paddedRange,
  priceDecimals,
} from "/static/plot.js";
import { TimeViewport, enableInteraction } from "/static/viewport.js";

export const INTERVALS_MS = {
  "1s": 1e3,
  "1m": 60e3,
  "5m": 300e3,
  "15m": 900e3,
  "1h": 3600e3,
  "1d": 86400e3,
};
const MAX_CANDLES = 5000;
const BAR_PX = 9; // default zoom: one candle per 9 px
const AXIS_ALLOWANCE_PX = 90; // about what the price axis takes of the canvas width
const RIGHT_AIR_BARS = 2; // free space right of the forming candle while live
const MIN_BARS = 8;
const MAX_BARS = 2000;
const VOLUME_SHARE = 0.18; // of the plot height, at its bottom

const fromApi = (c) => ({
  t: c.timestamp,
  open: c.open,
  high: c.high,
  low: c.low,
  close: c.close,
  volume: c.volume,
  count: c.trade_count,
  stored: true,
  provisional: false,
});

const fromTrade = (bucket, trade) => ({
  t: bucket,
  open: trade.price,
  high: trade.price,
  low: trade.price,
  close: trade.price,
  volume: trade.quantity ?? 0,
  count: 1,
  stored: false,
  provisional: false,
});

export class CandleSeries {
  constructor(interval) {
    this.interval = interval;
    this.intervalMs = INTERVALS_MS[interval];
    this.candles = []; // oldest first, one per bucket that has trades
    // Worth asking for older candles: the last read found some (gaps are left out, so a
    // short page does not mean the start of history).
    this.hasOlder = false;
  }

  bucketOf(timeMs) {
    return timeMs - (((timeMs % this.intervalMs) + this.intervalMs) % this.intervalMs);
  }

  /** Replaces everything with the API's candles (oldest first). */
  setStored(list) {
    this.candles = list.map(fromApi);
    this.hasOlder = list.length > 0;
  }

  /** Adds an older page in front (the API's candles strictly before the first one). */
  prependStored(list) {
    const first = this.candles.length ? this.candles[0].t : Infinity;
    const older = list.filter((c) => c.timestamp < first).map(fromApi);
    const room = Math.max(0, MAX_CANDLES - this.candles.length);
    this.candles = older.slice(Math.max(0, older.length - room)).concat(this.candles);
    this.hasOlder = older.length > 0 && room > older.length;
  }

  /**
   * Folds a live trade into its candle. Returns the start of a stored candle to read again
   * (closed and provisional), or null.
   */
  addTrade(trade) {
    const bucket = this.bucketOf(trade.timestamp);
    const candles = this.candles;
    const last = candles[candles.length - 1];
    if (!last || bucket > last.t) {
      candles.push(fromTrade(bucket, trade));
      if (candles.length > MAX_CANDLES * 1.25) {
        this.candles = candles.slice(candles.length - MAX_CANDLES);
        this.hasOlder = true;
      }
      return last && last.provisional ? last.t : null;
    }
    const i = lowerBound(candles, bucket);
    const candle = candles[i];
    if (candle && candle.t === bucket) {
      candle.high = Math.max(candle.high, trade.price);
      candle.low = Math.min(candle.low, trade.price);
      candle.close = trade.price; // trades arrive in processing order: the newest closes
      candle.volume += trade.quantity ?? 0;
      candle.count += 1;
      if (!candle.stored) return null;
      candle.provisional = true;
      return candle === last ? null : candle.t; // a late trade in a closed candle: re-read now
    }
    // An empty bucket inside the loaded range had no stored trade: this one is new. Older
    // than the loaded range: not on screen, nothing to do.
    if (i > 0) candles.splice(i, 0, fromTrade(bucket, trade));
    return null;
  }

  /** The stored version of a closed candle, read again after live trades reached it. */
  replace(apiCandle) {
    const i = lowerBound(this.candles, apiCandle.timestamp);
    if (this.candles[i]?.t === apiCandle.timestamp) this.candles[i] = fromApi(apiCandle);
  }

  /** Plain copies for the page's debug hook. */
  snapshot() {
    return this.candles.map((c) => ({ ...c }));
  }
}

export class CandleChart {
  constructor(canvas, { onInvalidate = () => {} } = {}) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.onInvalidate = onInvalidate;
    this.series = null;
    this.message = "loading candles…";
    this.hoverX = null;
    this.viewport = new TimeViewport();
    this.plot = { x0: 0, x1: 1 };
    this.range = null;
    enableInteraction(this, () => this.onInvalidate());
  }

  /** A new series; the zoom starts over unless `keepView` (the same one read again). */
  setSeries(series, { keepView = false, message = "loading candles…" } = {}) {
    this.series = series;
    this.message = message;
    if (!keepView) this.viewport.reset();
  }

  extent() {
    const candles = this.series?.candles;
    if (!candles || !candles.length) return null;
    const step = this.series.intervalMs;
    // From the canvas, not the last drawn plot: the default must not change between frames.
    const width = this.canvas.clientWidth - AXIS_ALLOWANCE_PX;
    const bars = Math.max(MIN_BARS, Math.floor(width / BAR_PX));
    return {
      first: candles[0].t,
      liveEdge: candles[candles.length - 1].t + (1 + RIGHT_AIR_BARS) * step,
      defaultSpanMs: bars * step,
      minSpanMs: MIN_BARS * step,
      maxSpanMs: MAX_BARS * step,
      fitAll: false,
    };
  }

  /** True when the view reaches left of the oldest loaded candle and older ones may exist. */
  wantsOlder() {
    const candles = this.series?.candles;
    return Boolean(this.range && candles?.length && this.series.hasOlder &&
      this.range.t0 < candles[0].t);
  }

  draw() {
    const { w, h } = fitCanvas(this.canvas, this.ctx);
    const ctx = this.ctx;
    ctx.clearRect(0, 0, w, h);
    ctx.font = FONT;
    const extent = this.extent();
    if (!extent || w < 50 || h < 50) {
      this.canvas.dataset.candles = "0";
      this.range = null;
      drawWaiting(ctx, w, h, this.series?.candles.length === 0 ? "no candles yet" : this.message);
      return;
    }
    const all = this.series.candles;
    const step = this.series.intervalMs;
    const { t0, t1 } = this.viewport.resolve(extent);
    this.range = { t0, t1 };
    const first = lowerBound(all, t0 - step + 1);
    const end = lowerBound(all, t1);
    const shown = all.slice(first, end);
    this.canvas.dataset.candles = String(shown.length);
    if (!shown.length) {
      drawWaiting(ctx, w, h, "no candles in this range");
      return;
    }

    let lo = Infinity;
    let hi = -Infinity;
    let maxVolume = 0;
    for (const c of shown) {
      lo = Math.min(lo, c.low);
      hi = Math.max(hi, c.high);
      maxVolume = Math.max(maxVolume, c.volume);
    }
    ({ lo, hi } = paddedRange(lo, hi));
    const newest = shown[shown.length - 1];
    const decimals = priceDecimals(newest.close);
    const axisW = Math.ceil(ctx.measureText(formatPrice(hi, decimals)).width) + 20;
    const x0 = PAD.left;
    const x1 = w - axisW;
    const y0 = PAD.top;
    const y1 = h - PAD.bottom;
    this.plot = { x0, x1 };
    const pxPerMs = (x1 - x0) / (t1 - t0);
    const xOf = (t) => x0 + (t - t0) * pxPerMs;
    const yOf = (v) => y1 - ((v - lo) / (hi - lo)) * (y1 - y0);

    const tagY = yOf(newest.close);
    drawValueGrid(ctx, { x0, x1, y0, y1, lo, hi, format: formatPrice, skipY: tagY });
    drawTimeGrid(ctx, { x0, x1, y0, y1, t0, t1 });
    ctx.save();
    ctx.beginPath();
    ctx.rect(x0, y0 - 8, x1 - x0, y1 - y0 + 16);
    ctx.clip();
    const barW = Math.max(1, Math.min(step * pxPerMs * 0.7, 24));
    const volumeH = (y1 - y0) * VOLUME_SHARE;
    for (const c of shown) {
      const x = xOf(c.t + step / 2);
      if (maxVolume > 0) {
        const vh = (c.volume / maxVolume) * volumeH;
        ctx.fillStyle = COLORS.volume;
        ctx.fillRect(x - barW / 2, y1 - vh, barW, vh);
      }
      const color = c.close >= c.open ? COLORS.up : COLORS.down;
      ctx.strokeStyle = color;
      ctx.fillStyle = color;
      ctx.lineWidth = 1;
      ctx.beginPath();
      ctx.moveTo(Math.round(x) + 0.5, yOf(c.high));
      ctx.lineTo(Math.round(x) + 0.5, yOf(c.low));
      ctx.stroke();
      const top = yOf(Math.max(c.open, c.close));
      const bottom = yOf(Math.min(c.open, c.close));
      ctx.fillRect(x - barW / 2, top, barW, Math.max(1, bottom - top));
    }
    ctx.restore();
    const tagColor = newest.close >= newest.open ? COLORS.up : COLORS.down;
    const label = formatPrice(newest.close, decimals);
    drawTag(ctx, { x0, x1, w, y: tagY, label, color: tagColor });
    if (this.hoverX !== null && this.hoverX >= x0 && this.hoverX <= x1) {
      const t = t0 + (this.hoverX - x0) / pxPerMs;
      const c = shown[Math.min(shown.length - 1, Math.max(0, lowerBound(shown, t - step + 1)))];
      const x = xOf(c.t + step / 2);
      drawCrosshair(ctx, x, y0, y1);
      const when = step >= 86400e3 ? formatDate(c.t) : `${formatDate(c.t)} ${formatClock(c.t)}`;
      drawTooltip(ctx, {
        x,
        x1,
        y0,
        lines: [
          when,
          `open   ${formatPrice(c.open, decimals)}`,
          `high   ${formatPrice(c.high, decimals)}`,
          `low    ${formatPrice(c.low, decimals)}`,
          `close  ${formatPrice(c.close, decimals)}`,
          `volume ${c.volume.toLocaleString("en-US", { maximumFractionDigits: 4 })}`,
          `trades ${c.count}`,
        ],
      });
    }
  }
}
