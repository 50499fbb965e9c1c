// One (exchange, symbol) stream of trades: the /ws socket, seeded from /history, reconnecting
// by itself with exponential backoff and jitter.
//
// On every (re)connect the socket opens first and buffers, then /history is fetched, so no trade
// falls in the gap between the two (duplicates are dropped by trade_id and time). The owner gets
// `onSeed(trades)` (replace everything: oldest first) and then `onTrade(frame)` per live trade.
// Nothing happens before the owner calls connect().

export async function fetchJson(path) {
  const response = await fetch(path, { cache: "no-store" });
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

function socketUrl(symbol) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws?symbols=${encodeURIComponent(symbol)}`;
}

// trade_id alone may repeat over time (a restarted simulated market counts from 1 again).
const tradeKey = (t) => `${t.trade_id}@${t.timestamp}`;

export class TradeStream {
  /**
   * @param {{exchange: string, symbol: string}} selection
   * @param {{historyLimit: number, backoffBaseMs: number, backoffMaxMs: number,
   *          onSeed: (trades: object[]) => void, onTrade: (frame: object) => void,
   *          onState: (state: "connecting"|"live"|"reconnecting") => void}} options
   */
  constructor(selection, options) {
    this.selection = selection;
    this.options = options;
    this.state = "connecting";
    this.socket = null;
    this.generation = 0; // bumps on every connect/close; events of older sockets are ignored
    this.seeding = false;
    this.seeded = false; // a seed has been delivered since the last connect
    this.seedBuffer = [];
    this.lastFrameAt = 0;
    this.attempt = 0;
    this.retryTimer = null;
    this.retryAt = 0;
  }

  setState(state) {
    this.state = state;
    this.options.onState(state);
  }

  connect() {
    const sel = this.selection;
    const generation = ++this.generation;
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.closeSocket();
    if (this.state !== "reconnecting") this.setState("connecting");

    let socket;
    try {
      socket = new WebSocket(socketUrl(sel.symbol));
    } catch {
      this.scheduleReconnect(generation);
      return;
    }
    this.socket = socket;
    this.seeding = true;
    this.seeded = false;
    this.seedBuffer = [];

    socket.onopen = () => {
      if (generation !== this.generation) return;
      this.lastFrameAt = Date.now();
      this.setState("live");
      this.seed(generation);
    };
    socket.onmessage = (event) => {
      if (generation !== this.generation) return;
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      if (!frame || frame.type !== "trade" || frame.symbol !== sel.symbol) return;
      if (frame.exchange !== sel.exchange) return; // /ws filters by symbol only
      this.lastFrameAt = Date.now();
      this.attempt = 0; // a healthy stream resets the backoff
      if (this.seeding) this.seedBuffer.push(frame);
      else this.options.onTrade(frame);
    };
    socket.onclose = () => {
      if (generation !== this.generation) return;
      this.socket = null;
      this.scheduleReconnect(generation);
    };
  }

  /** Stops for good: no more callbacks. */
  close() {
    this.generation += 1;
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.closeSocket();
  }

  closeSocket() {
    const socket = this.socket;
    this.socket = null;
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
  scheduleReconnect(generation) {
    if (generation !== this.generation) return;
    this.attempt += 1;
    const { backoffBaseMs, backoffMaxMs } = this.options;
    const ceiling = Math.min(backoffMaxMs, backoffBaseMs * 2 ** (this.attempt - 1));
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    this.retryAt = Date.now() + delay;
    this.retryTimer = setTimeout(() => this.connect(), delay);
    this.setState("reconnecting");
  }

  /** /history, then what the socket buffered meanwhile, handed over as one seed. */
  async seed(generation) {
    const sel = this.selection;
    const path =
      `/api/v1/history/${encodeURIComponent(sel.symbol)}` +
      `?limit=${this.options.historyLimit}&exchange=${encodeURIComponent(sel.exchange)}`;
    let stored = [];
    try {
      stored = await fetchJson(path);
    } catch {
      // Live data still flows; the charts just start empty.
    }
    if (generation !== this.generation) return;
    const seeded = Array.isArray(stored) ? stored.slice().reverse() : [];
    const seen = new Set(seeded.map(tradeKey));
    const fresh = this.seedBuffer.filter((t) => !seen.has(tradeKey(t)));
    this.seeding = false;
    this.seeded = true;
    this.seedBuffer = [];
    this.options.onSeed(seeded.concat(fresh));
  }
}
