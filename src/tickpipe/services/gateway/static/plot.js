// What the three charts (price, candles, compare) share: colours, number and clock formats,
// HiDPI canvas sizing, and the grid with its price and time labels.

export const COLORS = {
  grid: "rgba(148, 163, 184, 0.10)",
  axisText: "#7d8aa3",
  price: "#38bdf8",
  areaTop: "rgba(56, 189, 248, 0.22)",
  areaBottom: "rgba(56, 189, 248, 0.00)",
  sma: "#f59e0b",
  other: "#c084fc", // the second venue in the compare view
  buy: "#22c55e",
  sell: "#f43f5e",
  up: "#22c55e",
  down: "#f43f5e",
  volume: "rgba(148, 163, 184, 0.22)",
  zero: "rgba(226, 232, 240, 0.35)",
  crosshair: "rgba(226, 232, 240, 0.35)",
  tooltipBg: "rgba(15, 21, 33, 0.92)",
  tooltipBorder: "rgba(148, 163, 184, 0.25)",
  text: "#e2e8f0",
  tagText: "#04121c",
};
export const FONT = '11px ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace';
export const PAD = { top: 14, bottom: 24, left: 10 };

const TIME_STEPS_MS = [
  100, 250, 500, 1e3, 2e3, 5e3, 10e3, 15e3, 30e3, 60e3, 120e3, 300e3, 600e3, 900e3, 1800e3,
  3600e3, 7200e3, 21600e3, 43200e3, 86400e3, 2 * 86400e3, 7 * 86400e3, 14 * 86400e3,
  30 * 86400e3, 91 * 86400e3, 365 * 86400e3,
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

/** A signed number: "+1.25" / "−0.40" (a real minus sign lines up with the plus). */
export function formatSigned(value, decimals) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "—";
  const text = Math.abs(value).toLocaleString("en-US", {
    minimumFractionDigits: decimals,
    maximumFractionDigits: decimals,
  });
  return `${value < 0 ? "−" : "+"}${text}`;
}

const pad2 = (n) => String(n).padStart(2, "0");

export function formatClock(ms, withMillis = false) {
  const d = new Date(ms);
  const base = `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
  return withMillis ? `${base}.${String(d.getMilliseconds()).padStart(3, "0")}` : base;
}

export function formatDate(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())}`;
}

/** A time label that suits ticks `stepMs` apart: dates for days, HH:MM for minutes, ... */
export function formatTick(ms, stepMs) {
  if (stepMs >= 86400e3) return formatDate(ms);
  const d = new Date(ms);
  if (stepMs >= 60e3) {
    const hm = `${pad2(d.getHours())}:${pad2(d.getMinutes())}`;
    return d.getHours() === 0 && d.getMinutes() === 0 ? formatDate(ms).slice(5) : hm;
  }
  return formatClock(ms, stepMs < 1e3);
}

export function niceStep(range, targetCount) {
  const raw = range / Math.max(1, targetCount);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  return (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10) * mag;
}

/** Sizes the canvas for the screen's pixel ratio; returns its CSS size. */
export function fitCanvas(canvas, ctx) {
  const dpr = window.devicePixelRatio || 1;
  const cssW = canvas.clientWidth;
  const cssH = canvas.clientHeight;
  const w = Math.max(1, Math.round(cssW * dpr));
  const h = Math.max(1, Math.round(cssH * dpr));
  if (canvas.width !== w || canvas.height !== h) {
    canvas.width = w;
    canvas.height = h;
  }
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  return { w: cssW, h: cssH };
}

/** Low and high of `values` padded by 8 %, never an empty range. */
export function paddedRange(lo, hi) {
  if (!(hi > lo) || hi - lo < Math.abs(hi) * 1e-6) {
    const spread = Math.max(Math.abs(hi) * 1e-4, 1e-6);
    lo -= spread;
    hi += spread;
  }
  const margin = (hi - lo) * 0.08;
  return { lo: lo - margin, hi: hi + margin };
}

/** Horizontal grid lines with value labels right of x1; `skipY` keeps a tag's place free. */
export function drawValueGrid(ctx, { x0, x1, y0, y1, lo, hi, format, skipY = null }) {
  const yOf = (v) => y1 - ((v - lo) / (hi - lo)) * (y1 - y0);
  const step = niceStep(hi - lo, Math.max(2, Math.floor((y1 - y0) / 56)));
  const decimals = Math.max(0, -Math.floor(Math.log10(step)));
  ctx.lineWidth = 1;
  ctx.strokeStyle = COLORS.grid;
  ctx.fillStyle = COLORS.axisText;
  ctx.textAlign = "left";
  ctx.textBaseline = "middle";
  ctx.beginPath();
  for (let v = Math.ceil(lo / step) * step; v <= hi; v += step) {
    const y = Math.round(yOf(v)) + 0.5;
    ctx.moveTo(x0, y);
    ctx.lineTo(x1, y);
    if (skipY === null || Math.abs(y - skipY) > 14) ctx.fillText(format(v, decimals), x1 + 8, y);
  }
  ctx.stroke();
}

/** Vertical grid lines on local wall-clock boundaries (10 s ticks land on :00, :10, ...). */
export function drawTimeGrid(ctx, { x0, x1, y0, y1, t0, t1, labelY = y1 + 7 }) {
  const xOf = (t) => x0 + ((t - t0) / (t1 - t0)) * (x1 - x0);
  const msPerPx = (t1 - t0) / Math.max(1, x1 - x0);
  const fits = (step) => step / msPerPx >= ctx.measureText(formatTick(t0, step)).width + 36;
  const step = TIME_STEPS_MS.find(fits) ?? TIME_STEPS_MS.at(-1);
  const tzOffsetMs = new Date(t0).getTimezoneOffset() * 60e3;
  const first = Math.ceil((t0 - tzOffsetMs) / step) * step + tzOffsetMs;
  ctx.lineWidth = 1;
  ctx.strokeStyle = COLORS.grid;
  ctx.fillStyle = COLORS.axisText;
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  ctx.beginPath();
  for (let t = first; t <= t1; t += step) {
    const x = Math.round(xOf(t)) + 0.5;
    ctx.moveTo(x, y0);
    ctx.lineTo(x, y1);
    if (labelY !== null && x > x0 + 24 && x < x1 - 24) ctx.fillText(formatTick(t, step), x, labelY);
  }
  ctx.stroke();
}

/** The value tag on the right axis (last price, last spread). */
export function drawTag(ctx, { x0, x1, w, y, label, color, dashed = true }) {
  const yy = Math.round(y) + 0.5;
  if (dashed) {
    ctx.save();
    ctx.setLineDash([3, 4]);
    ctx.strokeStyle = color;
    ctx.globalAlpha = 0.55;
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(x0, yy);
    ctx.lineTo(x1, yy);
    ctx.stroke();
    ctx.restore();
  }
  const tagH = 18;
  ctx.fillStyle = color;
  roundRect(ctx, x1 + 2, yy - tagH / 2, w - x1 - 4, tagH, 4);
  ctx.fill();
  ctx.fillStyle = COLORS.tagText;
  ctx.textAlign = "left";
  ctx.textBaseline = "middle";
  ctx.fillText(label, x1 + 7, yy + 0.5);
}

/** A tooltip box of text lines near x, flipped left when it would leave the plot. */
export function drawTooltip(ctx, { x, x1, y0, lines, colors = [] }) {
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
    ctx.fillStyle = colors[i] ?? COLORS.text;
    ctx.fillText(line, bx + 8, by + 6 + i * 15);
  });
}

export function drawCrosshair(ctx, x, y0, y1) {
  ctx.strokeStyle = COLORS.crosshair;
  ctx.lineWidth = 1;
  ctx.beginPath();
  ctx.moveTo(Math.round(x) + 0.5, y0);
  ctx.lineTo(Math.round(x) + 0.5, y1);
  ctx.stroke();
}

export function drawWaiting(ctx, w, h, text) {
  ctx.fillStyle = COLORS.axisText;
  ctx.textAlign = "center";
  ctx.textBaseline = "middle";
  ctx.fillText(text, w / 2, h / 2);
}

export function roundRect(ctx, x, y, w, h, r) {
  ctx.beginPath();
  ctx.moveTo(x + r, y);
  ctx.arcTo(x + w, y, x + w, y + h, r);
  ctx.arcTo(x + w, y + h, x, y + h, r);
  ctx.arcTo(x, y + h, x, y, r);
  ctx.arcTo(x, y, x + w, y, r);
  ctx.closePath();
}

/** Index of the first element whose `key` is >= t in an array sorted by it. */
export function lowerBound(items, t, key = (item) => item.t) {
  let lo = 0;
  let hi = items.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (key(items[mid]) < t) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Index of the element whose time is nearest to t (items sorted by `t`, not empty). */
export function nearestIndex(items, t) {
  const i = Math.min(lowerBound(items, t), items.length - 1);
  if (i > 0 && Math.abs(items[i - 1].t - t) < Math.abs(items[i].t - t)) return i - 1;
  return i;
}
