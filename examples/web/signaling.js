// The WebSocket half of signaling protocol v1 (docs/protocol.md): request/response matching by
// `id`, and in-order delivery of server events. It knows nothing about WebRTC or the page.

const REQUEST_TIMEOUT_MS = 15_000;
const FRAME_LOG_LIMIT = 300;

/** A request that could not be answered because the connection closed. */
export class ConnectionClosed extends Error {}

export class SignalingError extends Error {
  constructor(frame) {
    super(`${frame.code}: ${frame.message}`);
    this.code = frame.code;
    this.frame = frame;
  }
}

export class Signaling {
  /**
   * @param {string} url        ws:// or wss:// address of the server's `/ws`
   * @param {(frame: object) => void | Promise<void>} onEvent
   *   called for every server frame that does not answer a request, one at a time and in
   *   arrival order (a returned promise is awaited before the next event is delivered)
   * @param {(info: {code: number, closing: string | null}) => void} onClose
   *   called once the socket has closed, after every event received before; `closing` is the
   *   reason of the server's `closing` frame, if one came
   * @param {Array} log  where to record the frames in both directions (kept by the caller
   *   across sessions)
   */
  constructor(url, onEvent, onClose, log = []) {
    this.url = url;
    this.onEvent = onEvent;
    this.onClose = onClose;
    this.nextId = 1;
    this.pending = new Map(); // id -> {resolve, reject, timer}
    this.events = Promise.resolve(); // serializes event handling
    this.log = log;
    this.closingReason = null;
    this.ws = null;
  }

  open() {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url);
      this.ws = ws;
      ws.onopen = () => resolve();
      ws.onerror = () => reject(new Error(`cannot connect to ${this.url}`));
      ws.onmessage = (ev) => this.#receive(ev.data);
      ws.onclose = (ev) => {
        for (const { reject: fail, timer } of this.pending.values()) {
          clearTimeout(timer);
          fail(new ConnectionClosed(`connection closed (${ev.code})`));
        }
        this.pending.clear();
        this.#queue(() => this.onClose({ code: ev.code, closing: this.closingReason }));
      };
    });
  }

  get isOpen() {
    return this.ws?.readyState === WebSocket.OPEN;
  }

  /** Sends a request and resolves with the server's answer; rejects with a SignalingError on an `error` frame. */
  request(type, fields = {}, timeoutMs = REQUEST_TIMEOUT_MS) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`no answer to ${type} (id ${id}) within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      try {
        this.#send({ type, id, ...fields });
      } catch (err) {
        clearTimeout(timer);
        this.pending.delete(id);
        reject(err);
      }
    });
  }

  close() {
    this.ws?.close();
  }

  #send(frame) {
    if (!this.isOpen) throw new Error(`cannot send ${frame.type}: not connected`);
    this.ws.send(JSON.stringify(frame));
    this.#record('out', frame);
  }

  #receive(data) {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      console.warn('signaling: ignoring a frame that is not JSON', data);
      return;
    }
    this.#record('in', frame);
    if (frame.type === 'closing') this.closingReason = frame.reason;
    // Answers bypass the event queue: an event handler may itself be waiting for one.
    if (frame.id !== undefined && this.pending.has(frame.id)) {
      const { resolve, reject, timer } = this.pending.get(frame.id);
      clearTimeout(timer);
      this.pending.delete(frame.id);
      if (frame.type === 'error') reject(new SignalingError(frame));
      else resolve(frame);
      return;
    }
    this.#queue(() => this.onEvent(frame), frame.type);
  }

  #queue(task, what = 'close') {
    this.events = this.events
      .then(task)
      .catch((err) => console.error(`signaling: handling ${what} failed`, err));
  }

  #record(dir, frame) {
    // A copy: handlers keep (and update) objects of the frame. SDPs are long; the log keeps
    // their first lines so it stays readable.
    const copy = JSON.parse(JSON.stringify(frame));
    if (typeof copy.sdp === 'string' && copy.sdp.length > 400) {
      copy.sdp = `${copy.sdp.slice(0, 400)}… (${copy.sdp.length} chars)`;
    }
    const entry = { t: Math.round(performance.now()), dir, frame: copy };
    this.log.push(entry);
    if (this.log.length > FRAME_LOG_LIMIT) this.log.shift();
  }
}
