// The live connection: one websocket per tab, reconnecting with backoff. It remembers the last
// sequence number seen and asks the server for what it missed; a `refresh` (too far behind, or
// the server restarted) makes the panel reload its state over HTTP.

export class LiveSocket {
  constructor({ onMessage, onRefresh, onStatus }) {
    this.onMessage = onMessage;
    this.onRefresh = onRefresh;
    this.onStatus = onStatus;
    this.seq = null;
    this.epoch = null;
    this.delay = 500;
    this.ws = null;
  }

  start() {
    const scheme = window.location.protocol === 'https:' ? 'wss' : 'ws';
    const query = this.seq !== null && this.epoch ? `?since=${this.seq}&epoch=${encodeURIComponent(this.epoch)}` : '';
    const ws = new WebSocket(`${scheme}://${window.location.host}/panel/ws${query}`);
    this.ws = ws;
    this.onStatus('connecting');
    ws.addEventListener('open', () => {
      this.delay = 500;
      this.onStatus('live');
    });
    ws.addEventListener('message', (event) => this.receive(event.data));
    ws.addEventListener('close', (event) => {
      if (this.ws !== ws) return;
      if (event.code === 4001) {
        window.location.assign('/panel/login');
        return;
      }
      this.onStatus('reconnecting');
      window.setTimeout(() => this.start(), this.delay);
      this.delay = Math.min(this.delay * 2, 8000);
    });
  }

  receive(text) {
    let msg;
    try {
      msg = JSON.parse(text);
    } catch (e) {
      return;
    }
    if (msg.type === 'hello') {
      const fresh = this.seq === null || this.epoch !== msg.data.epoch;
      this.epoch = msg.data.epoch;
      if (fresh) {
        this.seq = msg.seq;
        this.onRefresh();
      }
      document.body.dataset.seq = String(this.seq);
      return;
    }
    if (msg.type === 'refresh') {
      this.seq = msg.seq;
      document.body.dataset.seq = String(this.seq);
      this.onRefresh();
      return;
    }
    if (msg.type === 'pong') return;
    if (typeof msg.seq === 'number') {
      if (this.seq !== null && msg.seq <= this.seq) return; // already shown
      if (this.seq !== null && msg.seq > this.seq + 1) {
        // a gap should never happen; if it does, the safe answer is a full reload
        this.seq = msg.seq;
        this.onRefresh();
        return;
      }
      this.seq = msg.seq;
      document.body.dataset.seq = String(this.seq);
    }
    this.onMessage(msg);
  }
}
