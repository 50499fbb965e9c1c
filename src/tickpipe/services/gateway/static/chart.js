// A small canvas chart of trades: price line and area, SMA line, BUY/SELL markers where the
// signal changes, time and price axes, last-price tag, hover crosshair. No dependencies.
// The owner appends points and calls draw() at most once per animation frame.

const COLORS = {
  grid: "rgba(148, 163, 184, 0.10)",
  axisText: "#7d8aa3",
  price: "#38bdf8",
  areaTop: "rgba(56, 189, 248, 0.22)",
  areaBottom: "rgba(56, 189, 248, 0.00)",
  sma: "#f59e0b",
  buy: "#22c55e",
  sell: "#f43f5e",
  crosshair: "rgba(226, 232, 240, 0.35)",
  tooltipBg: "rgba(15, 21, 33, 0.92)",
  tooltipBorder: "rgba(148, 163, 184, 0.25)",
  text: "#e2e8f0",
  tagText: "#04121c",
};
const FONT = '11px ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace';
const PAD = { top: 14, bottom: 24, left: 10 };
const MARKER_PX = 5;
const MIN_MARKER_GAP_PX = 3;
const GAP_MIN_MS = 1000; // a pause longer than this and GAP_FACTOR x the mean spacing
const GAP_FACTOR = 20; //   between two trades breaks the lines
const TIME_STEPS_MS = [
  100, 250, 500, 1e3, 2e3, 5e3, 10e3, 15e3, 30e3, 60e3, 120e3, 300e3, 600e3, 900e3, 1800e3,
  3600e3, 7200e3, 21600e3, 43200e3, 86400e3,
];

/** Six significant digits, at least two decimals: the tick size of most crypto quotes. */
export function priceDecimals(price) {
  if (!(price > 0)) return 2;
  return Math.min(8, Math.max(2, 5 - Math.floor(Math.log10(price))));
}

export function formatPrice(price, decimals = priceDecimals(price)) {
  if (price === null || price === undefined || !Number.isFinite(price)) return "—";
  return price.toLocaleString("en-US", {
    minimumFractionDigits: decimals,
    maximumFractionDigits: decimals,
  });
}

const pad2 = (n) => String(n).padStart(2, "0");

export function formatClock(ms, withMillis = false) {
  const d = new Date(ms);
  const base = `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
  return withMillis ? `${base}.${String(d.getMilliseconds()).padStart(3, "0")}` : base;
}

function niceStep(range, targetCount) {
  const raw = range / Math.max(1, targetCount);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  return (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10) * mag;
}

export class PriceChart {
  /**
   * @param {HTMLCanvasElement} canvas
   * @param {{maxPoints?: number, onInvalidate?: () => void}} options
   *   onInvalidate: asks the owner for a redraw on the next animation frame (resize, hover).
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
    new ResizeObserver(() => this.onInvalidate()).observe(canvas);
    canvas.addEventListener("pointermove", (e) => {
      this.hoverX = e.offsetX;
      this.onInvalidate();
    });
    canvas.addEventListener("pointerleave", () => {
      this.hoverX = null;
      this.onInvalidate();
    });
  }

  get size() {
    return this.points.length;
  }

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

  /** The points on screen: the newest maxPoints (the array may briefly hold a few more). */
  visible() {
    const n = this.points.length;
    return n > this.maxPoints ? this.points.slice(n - this.maxPoints) : this.points;
  }

  resize() {
    const dpr = window.devicePixelRatio || 1;
    const cssW = this.canvas.clientWidth;
    const cssH = this.canvas.clientHeight;
    const w = Math.max(1, Math.round(cssW * dpr));
    const h = Math.max(1, Math.round(cssH * dpr));
    if (this.canvas.width !== w || this.canvas.height !== h) {
      this.canvas.width = w;
      this.canvas.height = h;
    }
    this.ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    return { w: cssW, h: cssH };
  }

  draw() {
    const { w, h } = this.resize();
    const ctx = this.ctx;
    ctx.clearRect(0, 0, w, h);
    ctx.font = FONT;
    const pts = this.visible();
    this.canvas.dataset.points = String(pts.length);
    if (pts.length === 0 || w < 50 || h < 50) {
      this.markerCount = 0;
      this.canvas.dataset.markers = "0";
      ctx.fillStyle = COLORS.axisText;
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      ctx.fillText("waiting for trades…", w / 2, h / 2);
      return;
    }

    // Value range over price and SMA, padded so lines never touch the edges.
    let lo = Infinity;
    let hi = -Infinity;
    for (const p of pts) {
      if (p.price < lo) lo = p.price;
      if (p.price > hi) hi = p.price;
      if (p.sma !== null && p.sma !== undefined) {
        if (p.sma < lo) lo = p.sma;
        if (p.sma > hi) hi = p.sma;
      }
    }
    if (hi - lo < Math.abs(hi) * 1e-6 || hi === lo) {
      const spread = Math.max(Math.abs(hi) * 1e-4, 1e-6);
      lo -= spread;
      hi += spread;
    }
    const margin = (hi - lo) * 0.08;
    lo -= margin;
    hi += margin;

    const decimals = priceDecimals(pts[pts.length - 1].price);
    const axisW = Math.ceil(ctx.measureText(formatPrice(hi, decimals)).width) + 20;
    const x0 = PAD.left;
    const x1 = w - axisW;
    const y0 = PAD.top;
    const y1 = h - PAD.bottom;
    const t0 = pts[0].t;
    const t1 = Math.max(pts[pts.length - 1].t, t0 + 1);
    const xOf = (t) => x0 + ((t - t0) / (t1 - t0)) * (x1 - x0);
    const yOf = (v) => y1 - ((v - lo) / (hi - lo)) * (y1 - y0);

    const lastY = yOf(pts[pts.length - 1].price);
    this.drawGrid(ctx, { x0, x1, y0, y1, lo, hi, t0, t1, xOf, yOf, lastY });
    ctx.save();
    ctx.beginPath();
    ctx.rect(x0, y0 - 8, x1 - x0, y1 - y0 + 16);
    ctx.clip();
    this.drawSeries(ctx, pts, { xOf, yOf, y1 });
    this.drawMarkers(ctx, pts, { xOf, yOf });
    ctx.restore();
    this.drawLastPrice(ctx, pts[pts.length - 1], { x0, x1, w, yOf, decimals });
    if (this.hoverX !== null && this.hoverX >= x0 && this.hoverX <= x1) {
      this.drawHover(ctx, pts, { x0, x1, y0, y1, xOf, yOf, t0, t1, decimals });
    }
  }

  drawGrid(ctx, { x0, x1, y0, y1, lo, hi, t0, t1, xOf, yOf, lastY }) {
    ctx.lineWidth = 1;
    ctx.strokeStyle = COLORS.grid;
    ctx.fillStyle = COLORS.axisText;

    const step = niceStep(hi - lo, Math.max(2, Math.floor((y1 - y0) / 56)));
    const stepDecimals = Math.max(0, -Math.floor(Math.log10(step)));
    ctx.textAlign = "left";
    ctx.textBaseline = "middle";
    ctx.beginPath();
    for (let v = Math.ceil(lo / step) * step; v <= hi; v += step) {
      const y = Math.round(yOf(v)) + 0.5;
      ctx.moveTo(x0, y);
      ctx.lineTo(x1, y);
      // The last-price tag sits on the axis: labels under it would show through.
      if (Math.abs(y - lastY) > 14) ctx.fillText(formatPrice(v, stepDecimals), x1 + 8, y);
    }
    ctx.stroke();

    // Labels need their width plus some air; sub-second steps need the longer HH:MM:SS.mmm.
    const msPerPx = (t1 - t0) / Math.max(1, x1 - x0);
    const fits = (step) =>
      step / msPerPx >= ctx.measureText(formatClock(t0, step < 1e3)).width + 36;
    const tStep = TIME_STEPS_MS.find(fits) ?? TIME_STEPS_MS.at(-1);
    // Align ticks to local wall-clock boundaries (so 10 s ticks land on :00, :10, ...).
    const tzOffsetMs = new Date(t0).getTimezoneOffset() * 60e3;
    const first = Math.ceil((t0 - tzOffsetMs) / tStep) * tStep + tzOffsetMs;
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    ctx.beginPath();
    for (let t = first; t <= t1; t += tStep) {
      const x = Math.round(xOf(t)) + 0.5;
      ctx.moveTo(x, y0);
      ctx.lineTo(x, y1);
      if (x > x0 + 24 && x < x1 - 24) ctx.fillText(formatClock(t, tStep < 1e3), x, y1 + 7);
    }
    ctx.stroke();
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

  drawLastPrice(ctx, last, { x0, x1, w, yOf, decimals }) {
    const y = Math.round(yOf(last.price)) + 0.5;
    ctx.save();
    ctx.setLineDash([3, 4]);
    ctx.strokeStyle = "rgba(56, 189, 248, 0.55)";
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(x0, y);
    ctx.lineTo(x1, y);
    ctx.stroke();
    ctx.restore();

    const label = formatPrice(last.price, decimals);
    const tagH = 18;
    ctx.fillStyle = COLORS.price;
    roundRect(ctx, x1 + 2, y - tagH / 2, w - x1 - 4, tagH, 4);
    ctx.fill();
    ctx.fillStyle = COLORS.tagText;
    ctx.textAlign = "left";
    ctx.textBaseline = "middle";
    ctx.fillText(label, x1 + 7, y + 0.5);
  }

  drawHover(ctx, pts, { x0, x1, y0, y1, xOf, yOf, t0, t1, decimals }) {
    const t = t0 + ((this.hoverX - x0) / (x1 - x0)) * (t1 - t0);
    const p = pts[nearestIndex(pts, t)];
    const x = Math.round(xOf(p.t)) + 0.5;
    const y = yOf(p.price);
    ctx.strokeStyle = COLORS.crosshair;
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(x, y0);
    ctx.lineTo(x, y1);
    ctx.stroke();
    ctx.fillStyle = COLORS.price;
    ctx.beginPath();
    ctx.arc(x, y, 3.5, 0, Math.PI * 2);
    ctx.fill();

    const lines = [
      formatClock(p.t, true),
      `price  ${formatPrice(p.price, decimals)}`,
      `sma    ${p.sma === null || p.sma === undefined ? "—" : formatPrice(p.sma, decimals)}`,
      `signal ${p.signal}`,
    ];
    const boxW = Math.max(...lines.map((l) => ctx.measureText(l).width)) + 16;
    const boxH = lines.length * 15 + 10;
    const bx = x + 12 + boxW > x1 ? x - 12 - boxW : x + 12;
    const by = y0 + 4;
    ctx.fillStyle = COLORS.tooltipBg;
    ctx.strokeStyle = COLORS.tooltipBorder;
    roundRect(ctx, bx, by, boxW, boxH, 6);
    ctx.fill();
    ctx.stroke();
    ctx.textAlign = "left";
    ctx.textBaseline = "top";
    lines.forEach((line, i) => {
      const isSignal = i === lines.length - 1;
      ctx.fillStyle = !isSignal
        ? COLORS.text
        : p.signal === "BUY"
          ? COLORS.buy
          : p.signal === "SELL"
            ? COLORS.sell
            : COLORS.axisText;
      ctx.fillText(line, bx + 8, by + 6 + i * 15);
    });
  }
}

function nearestIndex(pts, t) {
  let lo = 0;
  let hi = pts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (pts[mid].t < t) lo = mid + 1;
    else hi = mid;
  }
  if (lo > 0 && Math.abs(pts[lo - 1].t - t) < Math.abs(pts[lo].t - t)) return lo - 1;
  return lo;
}

function roundRect(ctx, x, y, w, h, r) {
  ctx.beginPath();
  ctx.moveTo(x + r, y);
  ctx.arcTo(x + w, y, x + w, y + h, r);
  ctx.arcTo(x + w, y + h, x, y + h, r);
  ctx.arcTo(x, y + h, x, y, r);
  ctx.arcTo(x, y, x + w, y, r);
  ctx.closePath();
}
