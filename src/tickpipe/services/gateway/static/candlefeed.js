// What the candle view shows: /api/v1/candles for one stream and interval, then live trades folded
// in as they come (no re-read per trade), older pages when panned left of the oldest candle.
//
// Frames received before the request went out are stored already (the processor publishes after
// it writes), so only later ones are folded in: the owner numbers live frames (`seq`) and says
// which number the request starts after.

import { CandleSeries } from "/static/candles.js";
import { fetchJson } from "/static/stream.js";

const OLDER_RETRY_MS = 5000;

function candlesPath(selection, interval, query) {
  const search = new URLSearchParams({ interval, exchange: selection.exchange, ...query });
  return `/api/v1/candles/${encodeURIComponent(selection.symbol)}?${search}`;
}

export class CandleFeed {
  /**
   * @param {import("/static/candles.js").CandleChart} chart
   * @param {{limit: number, onChange: () => void}} options
   */
  constructor(chart, { limit, onChange }) {
    this.chart = chart;
    this.limit = limit;
    this.onChange = onChange;
    this.current = null; // {key, selection, series, fromSeq, buffer, olderLoading, olderRetryAt}
    this.loads = 0; // completed reads (the debug hook shows them)
  }

  /** Reads the candles anew; frames numbered up to `fromSeq` are in the answer already. */
  async load(selection, interval, fromSeq) {
    const key = `${selection.exchange}:${selection.symbol}/${interval}`;
    const series = new CandleSeries(interval);
    const load = { key, selection, series, fromSeq, buffer: [], olderLoading: false, olderRetryAt: 0 };
    this.chart.setSeries(series, { keepView: this.current?.key === key });
    this.current = load;
    this.onChange();
    let list;
    try {
      list = await fetchJson(candlesPath(selection, interval, { limit: this.limit }));
    } catch {
      if (this.current === load) this.chart.message = "candles unavailable";
      return; // the stream's next seed (after a reconnect) reads them again
    }
    if (this.current !== load) return;
    series.setStored(Array.isArray(list) ? list : []);
    const buffered = load.buffer;
    load.buffer = null;
    for (const trade of buffered) this.fold(load, trade);
    this.loads += 1;
    this.onChange();
  }

  /** Whether the candles of this stream and interval are loaded or on their way. */
  follows(selection, interval) {
    return this.current?.key === `${selection.exchange}:${selection.symbol}/${interval}`;
  }

  /** Nothing to keep growing off screen; the view reads them again when it comes back. */
  stop() {
    this.current = null;
    this.chart.setSeries(null);
  }

  /** Live trades of the stream (oldest first), each with its `seq`. */
  feed(batch) {
    const load = this.current;
    if (!load) return;
    for (const trade of batch) {
      if ((trade.seq ?? 0) <= load.fromSeq) continue;
      if (load.buffer) load.buffer.push(trade);
      else this.fold(load, trade);
    }
  }

  fold(load, trade) {
    const reread = load.series.addTrade(trade);
    if (reread !== null) this.reread(load, reread);
  }

  /** One closed candle, read again: what a live trade added to it may have been counted twice. */
  async reread(load, bucket) {
    const only = { start: String(bucket), end: String(bucket), limit: "1" };
    try {
      const [candle] = await fetchJson(candlesPath(load.selection, load.series.interval, only));
      if (this.current === load && candle && candle.timestamp === bucket) {
        load.series.replace(candle);
        this.onChange();
      }
    } catch {
      // It stays marked provisional; the next load reads it anew.
    }
  }

  /** Panned left of the oldest candle: the page before it. */
  async loadOlder() {
    const load = this.current;
    const first = load?.series.candles[0];
    if (!first || load.buffer || load.olderLoading || !this.chart.wantsOlder()) return;
    if (Date.now() < load.olderRetryAt) return;
    load.olderLoading = true;
    const query = { end: String(first.t - 1), limit: this.limit };
    try {
      const list = await fetchJson(candlesPath(load.selection, load.series.interval, query));
      if (this.current === load) load.series.prependStored(Array.isArray(list) ? list : []);
    } catch {
      load.olderRetryAt = Date.now() + OLDER_RETRY_MS; // not on every frame while it fails
    } finally {
      load.olderLoading = false;
      this.onChange();
    }
  }

  /** Copies for the page's debug hook. */
  debug() {
    const load = this.current;
    return {
      interval: load?.series.interval ?? null,
      loads: this.loads,
      loading: Boolean(load?.buffer),
      candles: load?.series.snapshot() ?? [],
    };
  }
}
