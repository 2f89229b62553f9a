import { closeCodeOf, messageOf, optionError, ReplyxClientError } from './errors.js';
import { compareEventIds, isEventId } from './event-ids.js';
import { parseServerFrame, type ConnectedFrame, type DialogEvent } from './frames.js';
import { closeClass, DEFAULT_TIMING, reconnectDelayMs, type ReconnectTiming } from './reconnect.js';
import { isJwt, jwtExpiresAt, type TokenSource } from './token.js';
import { dialogUrl, subprotocols, type ClientKind } from './url.js';

// One client attached to one dialog. It implements the whole client side of the contract in
// docs/gateway.md: close-code classes, `since=` resume, de-duplication and order by event id,
// resync, application pings (browsers cannot see protocol pings) with a dead-connection timer,
// and token renewal before `exp`.

/** The part of a WebSocket the client uses: the browser's and the `ws` package's both fit. */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  /** `ws` only: drop the TCP connection without a closing handshake. */
  terminate?(): void;
  onmessage: ((event: never) => void) | null;
  onclose: ((event: never) => void) | null;
  onerror: ((event: never) => void) | null;
}

/** A WebSocket class: the global one in browsers, `ws`'s default export in Node. */
export type WebSocketConstructor = new (url: string, protocols: string[]) => WebSocketLike;

/** Settings of a {@link DialogClient}. */
export interface DialogClientOptions {
  /** Base URL of the stack: `wss://chat.example.com` (or `ws://127.0.0.1:8080`; `http(s)://` works too). */
  readonly url: string;
  readonly kind: ClientKind;
  readonly dialogId: number;
  /** Token source, called before every connect (renewal and the 4001 retry need it). */
  readonly getToken?: TokenSource;
  /** A fixed token instead of `getToken`: no renewal, and 4001 is terminal. */
  readonly token?: string;
  /** Resume after this event id on the first connect (e.g. one the app stored). */
  readonly since?: string;
  /** WebSocket class; default `globalThis.WebSocket`. In Node pass `ws`'s: `import WebSocket from 'ws'`. */
  readonly WebSocket?: WebSocketConstructor;
  /** First backoff ceiling after 4100-4199, 1006, 1011, …; doubles per failed attempt. Default 1000. */
  readonly backoffBaseMs?: number;
  /** Largest backoff ceiling. Default 30000. */
  readonly backoffCapMs?: number;
  /** Ceiling of the random delay after 4200-4299 (gateway draining). Default 2000. */
  readonly soonJitterMs?: number;
  /** Reconnect with a fresh token this long before it expires (at most half its remaining life). Default 60000. */
  readonly renewBeforeMs?: number;
  /** Give up on an attempt that has not received `connected` by then (and back off). Default 10000. */
  readonly connectTimeoutMs?: number;
  /** Source of randomness for the jitter, in [0, 1). Default `Math.random`. */
  readonly random?: () => number;
}

/** Why a connection ended: the close code and reason, from the server or set by the client. */
export interface CloseInfo {
  readonly code: number;
  readonly reason: string;
  /** The error behind it when the client never reached the server (token source failed). */
  readonly error?: unknown;
}

/** The client's state, as emitted on every change. */
export type ClientState =
  | { readonly state: 'idle' }
  | { readonly state: 'connecting' }
  | { readonly state: 'open'; readonly connected: ConnectedFrame }
  | (CloseInfo & { readonly state: 'reconnecting'; readonly delayMs: number; readonly attempt: number })
  | (CloseInfo & { readonly state: 'closed'; readonly terminal: boolean });

/** Listener signatures by event name. */
export interface DialogClientEvents {
  /** A new event, each id once, in id order. */
  event: (event: DialogEvent) => void;
  /**
   * Continuity could not be proven: refetch the dialog through the API. Events that arrive
   * while the returned promise is pending are held and delivered after it settles.
   */
  resync: () => unknown;
  state: (state: ClientState) => void;
}

const PING = '{"type":"ping"}';
const OPEN = 1;
/** Tokens with less life left than this are not renewed ahead (clock skew); the gateway's 4001 path renews them. */
const MIN_RENEW_LEFT_MS = 2000;
/** The longest delay setTimeout honours (2^31 - 1 ms); longer ones fire immediately. */
const MAX_TIMER_MS = 2 ** 31 - 1;

type Listeners = { [K in keyof DialogClientEvents]: Set<DialogClientEvents[K]> };

function positive(options: DialogClientOptions, name: 'backoffBaseMs' | 'backoffCapMs' | 'soonJitterMs' | 'renewBeforeMs' | 'connectTimeoutMs', fallback: number): number {
  const value = options[name] ?? fallback;
  if (typeof value !== 'number' || !(value >= 0) || !Number.isFinite(value)) throw optionError(name, 'a number of milliseconds >= 0', value);
  return value;
}

/** Calls `fn`, reporting a throw without letting it break the client (like an event listener in a browser). */
function callSafely<T>(fn: () => T): T | undefined {
  try {
    return fn();
  } catch (err) {
    setTimeout(() => {
      throw err;
    });
    return undefined;
  }
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof (value as PromiseLike<unknown> | undefined)?.then === 'function';
}

/** A reconnecting, resuming client for one dialog. Call `connect()` after adding listeners. */
export class DialogClient {
  readonly #url: (since?: string) => string;
  readonly #getToken: TokenSource;
  readonly #canRenew: boolean;
  readonly #Socket: WebSocketConstructor;
  readonly #timing: ReconnectTiming;
  readonly #renewBeforeMs: number;
  readonly #connectTimeoutMs: number;
  readonly #random: () => number;
  readonly #listeners: Listeners = { event: new Set(), resync: new Set(), state: new Set() };

  #state: ClientState = { state: 'idle' };
  #running = false;
  /** Bumped whenever pending async work (token fetch, renewal) must be abandoned. */
  #generation = 0;
  #ws: WebSocketLike | undefined;
  #connected: ConnectedFrame | undefined;
  #tokenExpiresAt: number | undefined;
  #lastId: string | undefined;
  /** After a resync, the next event is taken whatever its id: the history it followed is gone. */
  #acceptAnyNext = false;
  #attempt = 0;
  #authRetried = false;
  #pendingResyncs = 0;
  #held: DialogEvent[] = [];
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  #connectTimer: ReturnType<typeof setTimeout> | undefined;
  #renewTimer: ReturnType<typeof setTimeout> | undefined;
  #pingTimer: ReturnType<typeof setInterval> | undefined;
  /** When the unanswered ping was sent (any frame after it answers it); undefined when none is out. */
  #pingSentAt: number | undefined;
  #lastFrameAt = 0;

  /** Validates the options (throws `RPX_CLIENT_OPTIONS` naming the bad one); does not connect yet. */
  constructor(options: DialogClientOptions) {
    const { url, kind, dialogId, since, getToken, token } = options;
    dialogUrl(url, kind, dialogId);
    this.#url = (resumeAfter) => dialogUrl(url, kind, dialogId, resumeAfter);
    if (since !== undefined && !isEventId(since)) throw optionError('since', 'an event id such as "1732780000000-0"', since);
    this.#lastId = since;
    if ((getToken === undefined) === (token === undefined)) throw optionError('getToken/token', 'exactly one of them (a token source, or a fixed token)', getToken ? 'both' : 'neither');
    if (getToken !== undefined && typeof getToken !== 'function') throw optionError('getToken', 'a function returning a token', getToken);
    if (token !== undefined && !isJwt(token)) throw optionError('token', 'a JWT (three base64url parts)', '[redacted]');
    this.#getToken = getToken ?? (() => token as string);
    this.#canRenew = getToken !== undefined;
    const Socket = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (typeof Socket !== 'function') throw optionError('WebSocket', "a WebSocket class (this runtime has no global one: in Node pass `import WebSocket from 'ws'`)", Socket);
    this.#Socket = Socket;
    this.#timing = {
      backoffBaseMs: positive(options, 'backoffBaseMs', DEFAULT_TIMING.backoffBaseMs),
      backoffCapMs: positive(options, 'backoffCapMs', DEFAULT_TIMING.backoffCapMs),
      soonJitterMs: positive(options, 'soonJitterMs', DEFAULT_TIMING.soonJitterMs),
    };
    this.#renewBeforeMs = positive(options, 'renewBeforeMs', 60_000);
    this.#connectTimeoutMs = positive(options, 'connectTimeoutMs', 10_000);
    this.#random = options.random ?? Math.random;
  }

  /** The current state. */
  get state(): ClientState {
    return this.#state;
  }

  /** The id of the newest event received (the next `since=`), if any. */
  get lastEventId(): string | undefined {
    return this.#lastId;
  }

  /** The `connected` frame of the open connection (server, instance, heartbeat), if open. */
  get connected(): ConnectedFrame | undefined {
    return this.#connected;
  }

  /** Adds a listener; returns a function that removes it. */
  on<K extends keyof DialogClientEvents>(type: K, listener: DialogClientEvents[K]): () => void {
    const set = this.#listeners[type] as Set<DialogClientEvents[K]>;
    set.add(listener);
    return () => set.delete(listener);
  }

  /** Starts connecting (no-op while running). After a terminal close, starts over with the same `since`. */
  connect(): void {
    if (this.#running) return;
    this.#running = true;
    this.#attempt = 0;
    this.#authRetried = false;
    this.#setState({ state: 'connecting' });
    void this.#open(false);
  }

  /** Closes the connection and stops reconnecting and every timer. */
  close(): void {
    if (this.#running) this.#stop({ code: 1000, reason: 'closed by client' }, false);
  }

  /**
   * Resolves with the `connected` frame when open (at once if open now); rejects with
   * `RPX_CLIENT_CLOSED` (its `closeCode` is the close code) if the client is or becomes closed first.
   */
  opened(): Promise<ConnectedFrame> {
    return new Promise((resolve, reject) => {
      const settle = (state: ClientState): boolean => {
        if (state.state === 'open') resolve(state.connected);
        else if (state.state === 'closed') reject(new ReplyxClientError('RPX_CLIENT_CLOSED', `closed: ${state.code} ${state.reason}`, state.code));
        else return false;
        return true;
      };
      if (settle(this.#state)) return;
      const off = this.on('state', (next) => {
        if (settle(next)) off();
      });
    });
  }

  async #open(fresh: boolean): Promise<void> {
    const generation = ++this.#generation;
    let token: string;
    try {
      token = await this.#getToken({ fresh });
      if (!isJwt(token)) throw new ReplyxClientError('RPX_CLIENT_TOKEN', 'getToken returned something that is not a JWT; return the token string itself', 4001);
    } catch (error) {
      if (generation !== this.#generation) return;
      const code = closeCodeOf(error);
      if (code !== undefined && closeClass(code) === 'terminal') this.#stop({ code, reason: messageOf(error), error }, true);
      else this.#retry({ code: 1006, reason: `getToken failed: ${messageOf(error)}`, error });
      return;
    }
    if (generation === this.#generation) this.#openWith(token);
  }

  #openWith(token: string): void {
    let ws: WebSocketLike;
    try {
      ws = new this.#Socket(this.#url(this.#lastId), subprotocols(token));
    } catch (error) {
      this.#retry({ code: 1006, reason: `cannot open a WebSocket: ${messageOf(error)}`, error });
      return;
    }
    this.#ws = ws;
    this.#tokenExpiresAt = jwtExpiresAt(token);
    ws.onmessage = (event: { data: unknown }) => {
      if (this.#ws === ws && typeof event.data === 'string') this.#onFrame(ws, event.data);
    };
    ws.onclose = (event: { code: number; reason: string }) => {
      if (this.#ws === ws) this.#onLost({ code: event.code, reason: event.reason });
    };
    // A failed connection is always followed by a close event, which decides what happens next.
    ws.onerror = () => undefined;
    this.#connectTimer = setTimeout(() => this.#onLost({ code: 1006, reason: `no connected frame within ${this.#connectTimeoutMs} ms` }), this.#connectTimeoutMs);
  }

  #onFrame(ws: WebSocketLike, text: string): void {
    this.#lastFrameAt = Date.now();
    const frame = parseServerFrame(text);
    if (frame?.kind === 'event') {
      const { event } = frame;
      if (this.#lastId !== undefined && !this.#acceptAnyNext && compareEventIds(event.id, this.#lastId) <= 0) return;
      this.#acceptAnyNext = false;
      this.#lastId = event.id;
      if (this.#pendingResyncs > 0) this.#held.push(event);
      else this.#emitEvent(event);
    } else if (frame?.kind === 'connected') {
      clearTimeout(this.#connectTimer);
      clearInterval(this.#pingTimer);
      this.#connected = frame.frame;
      this.#attempt = 0;
      this.#authRetried = false;
      this.#pingSentAt = undefined;
      const heartbeat = frame.frame.heartbeat_ms;
      this.#pingTimer = setInterval(() => this.#pingOrGiveUp(ws, heartbeat), heartbeat / 2);
      this.#scheduleRenewal();
      this.#setState({ state: 'open', connected: frame.frame });
    } else if (frame?.kind === 'resync') {
      this.#onResync();
    }
  }

  #onResync(): void {
    this.#acceptAnyNext = true;
    const pending = [...this.#listeners.resync].map((listener) => callSafely(listener)).filter(isThenable);
    if (pending.length === 0) return;
    this.#pendingResyncs += 1;
    void Promise.allSettled(pending).then(() => {
      this.#pendingResyncs -= 1;
      if (this.#pendingResyncs > 0) return;
      const held = this.#held;
      this.#held = [];
      for (const event of held) this.#emitEvent(event);
    });
  }

  /** The connection ended (close event, dead timer): stop, retry the token once, or reconnect. */
  #onLost(info: CloseInfo): void {
    this.#dropConnection();
    const cls = closeClass(info.code);
    if (cls === 'terminal') {
      if (info.code !== 4001 || !this.#canRenew || this.#authRetried) {
        this.#stop(info, true);
        return;
      }
      this.#authRetried = true;
      this.#setState({ state: 'reconnecting', ...info, delayMs: 0, attempt: this.#attempt });
      void this.#open(true);
      return;
    }
    this.#retry(info);
  }

  #retry(info: CloseInfo): void {
    const cls = closeClass(info.code) === 'soon' ? 'soon' : 'backoff';
    const delayMs = reconnectDelayMs(cls, this.#attempt, this.#timing, this.#random);
    if (cls === 'backoff') this.#attempt += 1;
    this.#setState({ state: 'reconnecting', ...info, delayMs, attempt: this.#attempt });
    this.#retryTimer = setTimeout(() => void this.#open(false), delayMs);
  }

  #scheduleRenewal(): void {
    if (!this.#canRenew || this.#tokenExpiresAt === undefined) return;
    const left = this.#tokenExpiresAt - Date.now();
    if (left < MIN_RENEW_LEFT_MS) return;
    const ws = this.#ws;
    const delay = left - Math.min(this.#renewBeforeMs, left / 2);
    // Timers overflow past ~24.8 days and then fire at once: a 30-day site token would make the
    // client reconnect in a loop. Wake up at the limit and plan again instead.
    if (delay > MAX_TIMER_MS) {
      this.#renewTimer = setTimeout(() => this.#ws === ws && this.#scheduleRenewal(), MAX_TIMER_MS);
      return;
    }
    this.#renewTimer = setTimeout(() => void this.#renew(ws), delay);
  }

  /** Fetches a fresh token while still connected, then reconnects with it and `since`. */
  async #renew(ws: WebSocketLike | undefined): Promise<void> {
    const generation = this.#generation;
    let token: string;
    try {
      token = await this.#getToken({ fresh: true });
      if (!isJwt(token)) return;
    } catch {
      // Keep the connection: when the token expires the gateway closes with 4001 and the
      // fresh-token retry runs, so a failing token source is handled in one place.
      return;
    }
    if (generation !== this.#generation || this.#ws !== ws || !this.#running) return;
    this.#generation += 1;
    this.#dropConnection(1000, 'token renewal');
    this.#setState({ state: 'reconnecting', code: 1000, reason: 'token renewal', delayMs: 0, attempt: this.#attempt });
    this.#openWith(token);
  }

  /**
   * Every heartbeat/2: ping, unless a ping is still unanswered; give up once it has been for
   * 1.5 heartbeats (about 2 heartbeats without traffic). Judging the ping rather than a silence
   * timer keeps background tabs, whose timers browsers slow to once a minute, from looking dead.
   */
  #pingOrGiveUp(ws: WebSocketLike, heartbeat: number): void {
    const now = Date.now();
    const sentAt = this.#pingSentAt;
    if (sentAt === undefined || this.#lastFrameAt >= sentAt) {
      this.#pingSentAt = now;
      if (ws.readyState === OPEN) ws.send(PING);
    } else if (now - sentAt >= 1.5 * heartbeat) {
      this.#onLost({ code: 1006, reason: `no frame from the server for ${now - this.#lastFrameAt} ms` });
    }
  }

  /** Forgets the current socket (its events are ignored from now on) and its timers, and closes it. */
  #dropConnection(code?: number, reason?: string): void {
    const ws = this.#ws;
    this.#ws = undefined;
    this.#connected = undefined;
    clearTimeout(this.#connectTimer);
    clearTimeout(this.#renewTimer);
    clearInterval(this.#pingTimer);
    if (!ws) return;
    if (code === undefined && ws.terminate) ws.terminate();
    else if (ws.readyState <= OPEN) ws.close(code ?? 1000, reason);
  }

  #stop(info: CloseInfo, terminal: boolean): void {
    this.#running = false;
    this.#generation += 1;
    clearTimeout(this.#retryTimer);
    // Terminal closes have dropped their socket already; only close() finds one open here.
    this.#dropConnection(1000, 'closed by client');
    this.#held = [];
    this.#setState({ state: 'closed', ...info, terminal });
  }

  #setState(state: ClientState): void {
    this.#state = state;
    for (const listener of [...this.#listeners.state]) callSafely(() => listener(state));
  }

  #emitEvent(event: DialogEvent): void {
    for (const listener of [...this.#listeners.event]) callSafely(() => listener(event));
  }
}
