import { randomUUID } from 'node:crypto';
import WebSocket from 'ws';
import { DialogClient, type DialogEvent, type WebSocketConstructor } from '../../client/src/index.js';
import { pacedLoop } from './paced-loop.js';

// The traffic of the reliability suite: clients that follow docs/gateway.md's reconnect
// contract (the project's own @replyx/client: close-code classes, since= resume, resync with a
// refetch through the API) and a publisher that posts through nginx's public API at a fixed
// rate and retries 5xx and network errors with the same Idempotency-Key, as any careful client
// would. Everything they see is recorded by message text; scoring is pure (score.ts).

/** One message the publisher sent: what the API answered and when. */
export interface SentMessage {
  readonly seq: number;
  readonly text: string;
  readonly dialogId: number;
  readonly key: string;
  readonly firstSentAt: number;
  attempts: number;
  /** Statuses (0 = network error) of the failed attempts. */
  readonly failures: number[];
  acceptedAt?: number;
  eventId?: string;
  /** A 4xx or a give-up: the message is not expected anywhere. */
  rejected?: string;
}

/** How to publish. */
export interface PublisherOptions {
  /** Base URL of nginx (`http://127.0.0.1:PORT`). */
  readonly api: string;
  readonly token: () => string;
  readonly dialogs: readonly number[];
  readonly ratePerS: number;
  /** Text prefix that makes this run's rows findable in the database. */
  readonly prefix: string;
  /** A message still failing after this long is given up (counted as rejected). */
  readonly giveUpMs?: number;
  /**
   * Requests open at once, like an HTTP client's connection pool (default 32): while the API is
   * down, retries queue here instead of becoming a storm that is itself the outage.
   */
  readonly maxInFlight?: number;
}

/** A running publisher. */
export interface Publisher {
  readonly sent: SentMessage[];
  /** Messages not yet accepted or rejected. */
  pending(): number;
  /** Stops sending new messages; resolves once every message in flight has an answer. */
  stop(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Starts posting `ratePerS` messages a second, round-robin over the dialogs. */
export function startPublisher(opts: PublisherOptions): Publisher {
  const sent: SentMessage[] = [];
  const giveUpMs = opts.giveUpMs ?? 120_000;
  let open = 0;
  const waiting: (() => void)[] = [];
  const slot = async () => {
    if (open >= (opts.maxInFlight ?? 32)) await new Promise<void>((resolve) => waiting.push(resolve));
    open += 1;
  };
  const release = () => {
    open -= 1;
    waiting.shift()?.();
  };
  const post = async (m: SentMessage): Promise<void> => {
    for (let attempt = 1; ; attempt += 1) {
      m.attempts = attempt;
      let status = 0;
      let body: { event_id?: unknown; error?: { code?: unknown } } = {};
      await slot();
      try {
        const res = await fetch(`${opts.api}/api/dialogs/${m.dialogId}/messages`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${opts.token()}`, 'idempotency-key': m.key },
          body: JSON.stringify({ text: m.text }),
          signal: AbortSignal.timeout(30_000),
        });
        status = res.status;
        body = (await res.json().catch(() => ({}))) as typeof body;
      } catch {
        status = 0;
      } finally {
        release();
      }
      if (status >= 200 && status < 300) {
        m.acceptedAt = Date.now();
        if (typeof body.event_id === 'string') m.eventId = body.event_id;
        return;
      }
      m.failures.push(status);
      if (status >= 400 && status < 500 && status !== 429) {
        m.rejected = `${status} ${String(body.error?.code ?? '')}`;
        return;
      }
      if (Date.now() - m.firstSentAt > giveUpMs) {
        m.rejected = `gave up after ${attempt} attempts (last ${status})`;
        return;
      }
      // Backoff with jitter, capped at 1 s: a retry storm must not be the outage.
      await sleep(Math.min(1000, 100 * 2 ** Math.min(attempt - 1, 4)) * (0.5 + Math.random() / 2));
    }
  };
  const loop = pacedLoop(opts.ratePerS, (seq) => {
    const m: SentMessage = { seq, text: `${opts.prefix}:${seq}`, dialogId: opts.dialogs[seq % opts.dialogs.length]!, key: randomUUID(), firstSentAt: Date.now(), attempts: 0, failures: [] };
    sent.push(m);
    return post(m);
  });
  return {
    sent,
    pending: () => loop.inFlight(),
    stop: () => loop.stop(),
  };
}

/** One time a client was away: closed by the server (or cut), until its next `connected`. */
export interface Outage {
  readonly closedAt: number;
  readonly code: number;
  /** `instance` of the gateway it was connected to when it closed. */
  readonly fromInstance?: string;
  /** The wait the client chose before its first attempt (the contract's jitter or backoff). */
  readonly delayMs: number;
  /** Attempts until it was open again (1: the first one succeeded). */
  attempts: number;
  openedAt?: number;
  toInstance?: string;
}

/** A contract-following client and what it saw. */
export interface RecordingClient {
  readonly name: string;
  readonly dialogId: number;
  /** Times each message text arrived as an event (a count above 1 is a duplicate delivery). */
  readonly events: Map<string, number>;
  /** Texts fetched through the API after a `resync`. */
  readonly refetched: Set<string>;
  /** When each text first arrived (event or refetch). */
  readonly firstSeenAt: Map<string, number>;
  /** Times the client got `connected` (1 + reconnects). */
  connects: number;
  resyncs: number;
  /** Close codes the client saw. */
  readonly closes: number[];
  /** The event id each message text arrived with (the first time). */
  readonly eventIds: Map<string, string>;
  /** Every time it was away, in order (the reconnect-storm benchmark times each). */
  readonly outages: Outage[];
  /**
   * Event frames that arrived on the wire with an id this connection or an earlier one had
   * already received: a server that resends after `since=` shows here, even though the client
   * drops the repeat before the app sees it.
   */
  wireRepeats: number;
  isOpen(): boolean;
  close(): void;
}

/** Options of one recording client. */
export interface RecordingClientOptions {
  readonly name: string;
  /** nginx's base URL (`ws://` or `http://`). */
  readonly url: string;
  readonly kind: 'admin' | 'widget' | 'site';
  readonly dialogId: number;
  readonly getToken: () => string | Promise<string>;
  /** Token that may read the dialog's messages through the API (the refetch after `resync`). */
  readonly readToken: () => string;
  /** `Origin` sent on the handshake (widgets). */
  readonly origin?: string;
  /** Only texts with this prefix are recorded. */
  readonly prefix: string;
  /** Local address to connect from (a 127.x.y.z per simulated client host). */
  readonly localAddress?: string;
}

/** Opens a DialogClient that records every event of its dialog. */
export function recordingClient(opts: RecordingClientOptions): RecordingClient {
  const headers = opts.origin ? { origin: opts.origin } : {};
  const wireIds = new Set<string>();
  // `ws` takes headers as a third argument; the client passes (url, protocols) only.
  const Socket = class extends WebSocket {
    constructor(url: string, protocols: string[]) {
      super(url, protocols, { headers, ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) });
      // Beside the client's own handler: sees every event frame before its de-duplication.
      this.on('message', (data: Buffer, isBinary: boolean) => {
        const id = isBinary ? undefined : /^\{"id":"([^"]+)"/.exec(data.toString('latin1', 0, 64))?.[1];
        if (id === undefined) return;
        if (wireIds.has(id)) rec.wireRepeats += 1;
        else wireIds.add(id);
      });
    }
  } as unknown as WebSocketConstructor;
  const client = new DialogClient({ url: opts.url, kind: opts.kind, dialogId: opts.dialogId, getToken: opts.getToken, WebSocket: Socket });
  // Sockets are made only after connect() below, so the class above reads `rec` once it exists.
  const rec: RecordingClient = {
    name: opts.name,
    dialogId: opts.dialogId,
    events: new Map(),
    refetched: new Set(),
    firstSeenAt: new Map(),
    connects: 0,
    resyncs: 0,
    closes: [],
    eventIds: new Map(),
    outages: [],
    wireRepeats: 0,
    isOpen: () => client.state.state === 'open',
    close: () => client.close(),
  };
  let lastMessageId = 0;
  const seen = (text: string) => {
    if (!rec.firstSeenAt.has(text)) rec.firstSeenAt.set(text, Date.now());
  };
  client.on('event', (event: DialogEvent) => {
    const data = event.data as { id?: unknown; text?: unknown; event_id?: unknown } | undefined;
    if (typeof data?.id === 'number' || typeof data?.id === 'string') lastMessageId = Math.max(lastMessageId, Number(data.id));
    const text = data?.text;
    if (typeof text !== 'string' || !text.startsWith(`${opts.prefix}:`)) return;
    rec.events.set(text, (rec.events.get(text) ?? 0) + 1);
    if (!rec.eventIds.has(text)) rec.eventIds.set(text, event.id);
    seen(text);
  });
  // The contract: continuity could not be proven, so refetch what was stored meanwhile.
  client.on('resync', async () => {
    rec.resyncs += 1;
    const api = opts.url.replace(/^ws/, 'http');
    for (let page = 0; page < 200; page += 1) {
      const res = await fetch(`${api}/api/dialogs/${opts.dialogId}/messages?since=${lastMessageId}&limit=500`, { headers: { authorization: `Bearer ${opts.readToken()}` } }).catch(() => undefined);
      if (!res?.ok) {
        await sleep(200);
        continue;
      }
      const { messages } = (await res.json()) as { messages: { id: number | string; text: string }[] };
      if (messages.length === 0) break;
      for (const m of messages) {
        lastMessageId = Math.max(lastMessageId, Number(m.id));
        if (m.text.startsWith(`${opts.prefix}:`)) {
          rec.refetched.add(m.text);
          seen(m.text);
        }
      }
    }
  });
  let instance: string | undefined;
  client.on('state', (s) => {
    const now = Date.now();
    if (s.state === 'open') {
      rec.connects += 1;
      instance = s.connected.instance;
      const away = rec.outages.at(-1);
      if (away && away.openedAt === undefined) {
        away.openedAt = now;
        away.toInstance = instance;
      }
    }
    if (s.state === 'reconnecting' || s.state === 'closed') {
      rec.closes.push(s.code);
      // A failed attempt while away is part of the same outage.
      const away = rec.outages.at(-1);
      if (!away || away.openedAt !== undefined) rec.outages.push({ closedAt: now, code: s.code, delayMs: s.state === 'reconnecting' ? s.delayMs : 0, attempts: 1, ...(instance !== undefined ? { fromInstance: instance } : {}) });
      else away.attempts += 1;
      instance = undefined;
    }
  });
  client.connect();
  return rec;
}
