// Zoom and pan of a chart's time axis, by mouse (wheel, drag) and touch (pinch, drag), and the
// rest of the wiring the three charts share (resize, hover).
//
// A viewport is either live (its right edge follows the newest data) or parked at a fixed end
// time; its span is the user's zoom, or the chart's default until the user zooms.

const WHEEL_ZOOM_PER_PX = 0.0015; // one wheel notch (100 px) zooms by about 16 %
const LINE_PX = 16; // a wheel "line" (Firefox) in pixels
const LIVE_SNAP = 0.01; // within 1 % of the span from the newest data counts as live

/**
 * Charts describe their data by an extent: `first` (oldest time), `liveEdge` (right edge when
 * following live), `defaultSpanMs`, `minSpanMs`, `maxSpanMs`, and `fitAll` (the default span is
 * "everything": zooming out to it goes back to fitting the data).
 */
export class TimeViewport {
  constructor() {
    this.live = true;
    this.spanMs = null; // null: the chart's default span
    this.endMs = 0; // the right edge while parked
  }

  /** The time range to draw, {t0, t1}. */
  resolve(extent) {
    const span = this.spanMs ?? extent.defaultSpanMs;
    // Parked: kept over the data even when old data is dropped from the chart.
    const parked = Math.min(extent.liveEdge, Math.max(this.endMs, extent.first + span * 0.1));
    const end = this.live ? extent.liveEdge : parked;
    return { t0: end - span, t1: end };
  }

  /** Zooms by `factor` (< 1 zooms in) keeping `anchorMs` at the same place on screen. */
  zoom(extent, anchorMs, factor) {
    const range = this.resolve(extent);
    const span = range.t1 - range.t0;
    const next = Math.min(extent.maxSpanMs, Math.max(extent.minSpanMs, span * factor));
    const t0 = anchorMs - (anchorMs - range.t0) * (next / span);
    this.place(extent, t0, t0 + next);
  }

  /** Moves the range `deltaMs` later in time (negative: back into history). */
  pan(extent, deltaMs) {
    const range = this.resolve(extent);
    this.place(extent, range.t0 + deltaMs, range.t1 + deltaMs);
  }

  place(extent, t0, t1) {
    const span = t1 - t0;
    const fitted = extent.fitAll && span >= extent.maxSpanMs * (1 - LIVE_SNAP);
    this.spanMs = fitted ? null : span;
    if (t1 >= extent.liveEdge - span * LIVE_SNAP || fitted) {
      this.live = true;
      return;
    }
    this.live = false;
    // Never so far back that the data leaves the screen entirely.
    this.endMs = Math.max(t1, extent.first + span * 0.1);
  }

  goLive() {
    this.live = true;
  }

  reset() {
    this.live = true;
    this.spanMs = null;
  }
}

/**
 * Wires wheel, drag and pinch on `chart.canvas` to `chart.viewport`. The chart provides
 * `extent()` (null while it has no data) and `plot`, the {x0, x1} of its plot area in CSS
 * pixels. `onChange` runs after every change (to redraw). Double-click resets the zoom.
 */
export function enableZoomPan(chart, onChange) {
  const canvas = chart.canvas;
  const msPerPx = (extent) => {
    const { t0, t1 } = chart.viewport.resolve(extent);
    return (t1 - t0) / Math.max(1, chart.plot.x1 - chart.plot.x0);
  };
  const zoomAt = (x, factor) => {
    const extent = chart.extent();
    if (!extent || !Number.isFinite(factor) || factor <= 0) return;
    const { t0 } = chart.viewport.resolve(extent);
    const anchor = t0 + (Math.min(chart.plot.x1, Math.max(chart.plot.x0, x)) - chart.plot.x0) *
      msPerPx(extent);
    chart.viewport.zoom(extent, anchor, factor);
    onChange();
  };
  const panBy = (dxPx) => {
    const extent = chart.extent();
    if (!extent || dxPx === 0) return;
    chart.viewport.pan(extent, -dxPx * msPerPx(extent)); // drag right = look back in time
    onChange();
  };

  canvas.addEventListener(
    "wheel",
    (e) => {
      e.preventDefault(); // the page must not scroll while the chart zooms
      const px = e.deltaMode === 1 ? e.deltaY * LINE_PX : e.deltaY;
      zoomAt(e.offsetX, Math.exp(px * WHEEL_ZOOM_PER_PX));
    },
    { passive: false },
  );

  // Pointer events cover mouse, pen and touch alike: one pointer pans, two pinch.
  const pointers = new Map(); // pointerId -> {x, y}, CSS px relative to the canvas
  const pinchOf = () => {
    const [a, b] = [...pointers.values()];
    return { mid: (a.x + b.x) / 2, dist: Math.max(1, Math.hypot(a.x - b.x, a.y - b.y)) };
  };
  canvas.addEventListener("pointerdown", (e) => {
    if (e.pointerType === "mouse" && e.button !== 0) return;
    pointers.set(e.pointerId, { x: e.offsetX, y: e.offsetY });
    try {
      canvas.setPointerCapture(e.pointerId);
    } catch {
      /* the pointer is already gone */
    }
    canvas.classList.add("dragging");
  });
  canvas.addEventListener("pointermove", (e) => {
    const last = pointers.get(e.pointerId);
    if (!last) return;
    if (pointers.size >= 2) {
      const before = pinchOf();
      pointers.set(e.pointerId, { x: e.offsetX, y: e.offsetY });
      const after = pinchOf();
      zoomAt(after.mid, before.dist / after.dist);
      panBy(after.mid - before.mid);
    } else {
      pointers.set(e.pointerId, { x: e.offsetX, y: e.offsetY });
      panBy(e.offsetX - last.x);
    }
  });
  const release = (e) => {
    pointers.delete(e.pointerId);
    if (!pointers.size) canvas.classList.remove("dragging");
  };
  canvas.addEventListener("pointerup", release);
  canvas.addEventListener("pointercancel", release);
  canvas.addEventListener("dblclick", () => {
    chart.viewport.reset();
    onChange();
  });
}

/**
 * Everything a chart's canvas reacts to: a resize, the hover position (kept in `chart.hoverX`,
 * CSS px, null while the pointer is off the canvas) and zoom and pan (`enableZoomPan`).
 * `onChange` runs after each of them (to redraw).
 */
export function enableInteraction(chart, onChange) {
  const canvas = chart.canvas;
  new ResizeObserver(() => onChange()).observe(canvas);
  canvas.addEventListener("pointermove", (e) => {
    chart.hoverX = e.offsetX;
    onChange();
  });
  canvas.addEventListener("pointerleave", () => {
    chart.hoverX = null;
    onChange();
  });
  enableZoomPan(chart, onChange);
}
