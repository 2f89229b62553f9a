import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Broker, BrokerHandlers, HistoryResult } from './broker.js';
import { compareEventIds, dialogChannel, dialogIdFromChannel, dialogStream, eventFromStreamEntry, parseBrokerMessage, type BrokerEvent } from './protocol.js';
import { RedisPublisher, type PublishInput } from './publisher.js';
import { readHistory } from './history.js';
import { mergeReplay } from './merge-replay.js';

// The Redis broker: one subscriber connection (SUBSCRIBE per dialog with local members, batched
// per event-loop turn) and one
// command connection (FCALL of the replyx function library, XRANGE history). After Redis comes back the broker
// resubscribes itself and then reads each dialog's stream from the last id it delivered, so the
// window between "Redis is back" and "SUBSCRIBE took effect" loses nothing; if that history is
// gone (Redis restarted empty) the dialog's clients get a resync frame.

/** Options of the Redis broker. */
export interface RedisBrokerOptions {
  readonly url: string;
  readonly historyLength: number;
  readonly historyTtlS: number;
  /** Seconds a publish's idempotency key is remembered (PUBLISH_IDEMPOTENCY_TTL_S). */
  readonly idempotencyTtlS?: number;
  readonly logger: Logger;
  /** Per-command timeout on the command connection (REDIS_COMMAND_TIMEOUT_MS). */
  readonly commandTimeoutMs: number;
  /** How long start() waits for Redis before carrying on in the background (REDIS_START_TIMEOUT_MS). */
  readonly startTimeoutMs: number;
}

/** The dialogs of one batched SUBSCRIBE and the promise their states share. */
interface SubscribeBatch {
  readonly ids: Set<number>;
  readonly done: Promise<void>;
  readonly resolve: () => void;
  readonly reject: (err: Error) => void;
}

/** Thrown by publish when Redis is not connected: the event was not stored. */
export class BrokerUnavailableError extends Error {
  override readonly name = 'BrokerUnavailableError';
}

interface DialogState {
  ready: Promise<void>;
  /** Newest event id delivered for this dialog (dedupe after catch-up). */
  lastId: string | undefined;
  /** Non-null while catching up after a reconnect: live events wait here. */
  buffer: BrokerEvent[] | null;
}

const retryStrategy = (times: number): number => Math.min(times * 100, 2000);

/** Fan-out through Redis pub/sub with history in capped streams. */
export class RedisBroker implements Broker {
  readonly kind = 'redis' as const;
  readonly #cmd: Redis;
  readonly #sub: Redis;
  readonly #publisher: RedisPublisher;
  readonly #dialogs = new Map<number, DialogState>();
  readonly #handlers: BrokerHandlers;
  readonly #log: Logger;
  readonly #historyLength: number;
  readonly #startTimeoutMs: number;
  #everReady = false;
  #cmdEverReady = false;
  #lostAt: number | undefined;
  #closing = false;
  /** Dialogs joined this event-loop turn (or while a SUBSCRIBE is out), subscribed together by #flushSubscriptions. */
  #subscribeBatch: SubscribeBatch | undefined;
  /** Dialogs left this event-loop turn (or while a SUBSCRIBE is out), unsubscribed together. */
  readonly #unsubscribeBatch = new Set<number>();
  #flushScheduled = false;
  /** True while a SUBSCRIBE is out: joins and leaves meanwhile wait for its reply and go in the next. */
  #subscribing = false;

  /** Creates both connections (not yet connected; call start()). */
  constructor(options: RedisBrokerOptions, handlers: BrokerHandlers) {
    this.#handlers = handlers;
    this.#log = options.logger;
    this.#historyLength = options.historyLength;
    this.#startTimeoutMs = options.startTimeoutMs;
    // Commands fail fast while Redis is away, so POST /internal/publish answers 503 at once
    // instead of queueing an event nobody may ever store.
    this.#cmd = new Redis(options.url, {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      commandTimeout: options.commandTimeoutMs,
      retryStrategy,
      connectionName: 'replyx-gateway-cmd',
    });
    // Subscriptions wait for Redis; resubscription is ours (see #onSubReady) so we know when it took effect.
    this.#sub = new Redis(options.url, {
      lazyConnect: true,
      autoResubscribe: false,
      maxRetriesPerRequest: null,
      retryStrategy,
      connectionName: 'replyx-gateway-sub',
    });
    this.#publisher = new RedisPublisher(this.#cmd, { historyLength: options.historyLength, historyTtlS: options.historyTtlS, idempotencyTtlS: options.idempotencyTtlS });
    for (const [name, client] of [['cmd', this.#cmd], ['sub', this.#sub]] as const) {
      client.on('error', (err: Error) => this.#log.debug({ err: err.message, connection: name }, 'Redis error'));
    }
    this.#sub.on('close', () => {
      if (this.#closing || this.#lostAt !== undefined) return;
      this.#lostAt = Date.now();
      if (this.#everReady) this.#log.warn({ dialogs: this.#dialogs.size }, 'Redis connection lost; events wait until it is back');
    });
    this.#sub.on('ready', () => void this.#onSubReady());
    // Redis may come back empty (no persistence, a failover): the library is loaded again whenever
    // the command connection is ready after a reconnect, whichever connection comes back first.
    this.#cmd.on('ready', () => {
      if (this.#cmdEverReady) void this.#loadLibrary();
      this.#cmdEverReady = true;
    });
    this.#sub.on('message', (channel: string, message: string) => this.#onMessage(channel, message));
  }

  /** Connects both clients; waits up to startTimeoutMs, then keeps retrying in the background. */
  async start(): Promise<void> {
    const ready = (c: Redis) =>
      new Promise<void>((resolve) => {
        if (c.status === 'ready') return resolve();
        c.once('ready', () => resolve());
      });
    this.#cmd.connect().catch(() => undefined);
    this.#sub.connect().catch(() => undefined);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(true), this.#startTimeoutMs);
    });
    const late = await Promise.race([Promise.all([ready(this.#cmd), ready(this.#sub)]).then(() => false), timedOut]);
    clearTimeout(timer);
    if (late) this.#log.warn('Redis is not reachable yet; /health answers 503 until it is');
    else await this.#loadLibrary();
  }

  // Publishers with only +fcall cannot load the library themselves: the gateway loads it at start
  // (and the publisher again whenever Redis comes back without it).
  async #loadLibrary(): Promise<void> {
    try {
      await this.#publisher.load();
    } catch (err) {
      this.#log.warn({ err: String(err) }, 'could not load the replyx function library; the first publish retries');
    }
  }

  isReady(): boolean {
    return this.#cmd.status === 'ready' && this.#sub.status === 'ready';
  }

  get subscribedCount(): number {
    return this.#dialogs.size;
  }

  subscribe(dialogId: number): Promise<void> {
    const existing = this.#dialogs.get(dialogId);
    if (existing) return existing.ready;
    this.#unsubscribeBatch.delete(dialogId);
    const batch = (this.#subscribeBatch ??= this.#newSubscribeBatch());
    batch.ids.add(dialogId);
    const state: DialogState = { ready: batch.done, lastId: undefined, buffer: null };
    this.#dialogs.set(dialogId, state);
    return state.ready;
  }

  unsubscribe(dialogId: number): void {
    if (!this.#dialogs.delete(dialogId)) return;
    // Left before its SUBSCRIBE went out: it is not sent. The UNSUBSCRIBE still is, since an
    // earlier SUBSCRIBE of the same dialog may be live (one for a channel not subscribed is a no-op).
    this.#subscribeBatch?.ids.delete(dialogId);
    this.#unsubscribeBatch.add(dialogId);
    this.#scheduleFlush();
  }

  // A connect burst subscribes hundreds of dialogs per event-loop turn: one SUBSCRIBE (and one
  // UNSUBSCRIBE) with every channel of the turn costs one write instead of one per dialog, which
  // was the largest share of a handshake's time in the connect profile after the token check.
  #newSubscribeBatch(): SubscribeBatch {
    let resolve!: () => void;
    let reject!: (err: Error) => void;
    const done = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    // A failed SUBSCRIBE is retried on the next reconnect (#onSubReady covers every dialog).
    done.catch((err: unknown) => this.#log.warn({ err: String(err) }, 'subscribe failed'));
    this.#scheduleFlush();
    return { ids: new Set(), done, resolve, reject };
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled || this.#subscribing) return;
    this.#flushScheduled = true;
    setImmediate(() => this.#flushSubscriptions());
  }

  #flushSubscriptions(): void {
    this.#flushScheduled = false;
    const batch = this.#subscribeBatch;
    this.#subscribeBatch = undefined;
    const leaving = [...this.#unsubscribeBatch];
    this.#unsubscribeBatch.clear();
    if (leaving.length > 0 && this.#sub.status === 'ready' && !this.#closing) this.#sub.unsubscribe(...leaving.map(dialogChannel)).catch(() => undefined);
    if (!batch) return;
    if (batch.ids.size === 0 || this.#closing) return batch.resolve();
    // A storm's handshakes arrive one per event-loop turn: the joins (and leaves) that come while
    // this SUBSCRIBE is out go in the next one, sent when its reply is in (one Redis round trip).
    this.#subscribing = true;
    this.#sub.subscribe(...[...batch.ids].map(dialogChannel)).then(
      () => this.#subscribed(batch),
      (err: unknown) => this.#subscribed(batch, err ?? new Error('SUBSCRIBE failed')),
    );
  }

  #subscribed(batch: SubscribeBatch, err?: unknown): void {
    if (err === undefined) batch.resolve();
    else batch.reject(err as Error);
    this.#subscribing = false;
    if (this.#subscribeBatch || this.#unsubscribeBatch.size > 0) this.#scheduleFlush();
  }

  history(dialogId: number, sinceId: string): Promise<HistoryResult> {
    return readHistory(this.#cmd, dialogId, sinceId, this.#historyLength);
  }

  async lastEventId(dialogId: number): Promise<string | undefined> {
    const last = await this.#cmd.xrevrange(dialogStream(dialogId), '+', '-', 'COUNT', 1);
    return last[0]?.[0];
  }

  /** Seconds one PING takes on the command connection; undefined when Redis is not connected or does not answer. */
  async roundTrip(): Promise<number | undefined> {
    if (this.#cmd.status !== 'ready') return undefined;
    const started = process.hrtime.bigint();
    try {
      await this.#cmd.ping();
    } catch {
      return undefined;
    }
    return Number(process.hrtime.bigint() - started) / 1e9;
  }

  async publish(input: PublishInput): Promise<string> {
    if (this.#cmd.status !== 'ready') throw new BrokerUnavailableError(`Redis is ${this.#cmd.status}`);
    return this.#publisher.publish(input);
  }

  async close(): Promise<void> {
    this.#closing = true;
    this.#dialogs.clear();
    await Promise.allSettled([this.#cmd.quit(), this.#sub.quit()]);
    this.#cmd.disconnect();
    this.#sub.disconnect();
  }

  #onMessage(channel: string, message: string): void {
    const dialogId = dialogIdFromChannel(channel);
    if (dialogId === undefined) return;
    const state = this.#dialogs.get(dialogId);
    if (!state) return;
    const event = parseBrokerMessage(dialogId, message);
    if (!event) {
      this.#log.warn({ dialog_id: dialogId }, 'malformed broker message ignored');
      return;
    }
    if (state.buffer) {
      state.buffer.push(event);
      return;
    }
    if (state.lastId !== undefined && compareEventIds(event.id, state.lastId) <= 0) return;
    state.lastId = event.id;
    this.#handlers.onEvent(event);
  }

  async #onSubReady(): Promise<void> {
    const reconnect = this.#everReady;
    this.#everReady = true;
    const lostAt = this.#lostAt ?? Date.now();
    this.#lostAt = undefined;
    if (!reconnect) return;
    this.#handlers.onReconnect?.();
    const dialogs = [...this.#dialogs.entries()];
    this.#log.info({ dialogs: dialogs.length }, 'Redis connection back; resubscribing');
    if (dialogs.length === 0) return;
    for (const [, state] of dialogs) state.buffer ??= [];
    try {
      await this.#sub.subscribe(...dialogs.map(([id]) => dialogChannel(id)));
    } catch (err) {
      // The next reconnect retries; release the buffers so live delivery is not held.
      this.#log.warn({ err: String(err) }, 'resubscribe failed');
      for (const [id, state] of dialogs) this.#flush(id, state, []);
      return;
    }
    await Promise.all(dialogs.map(([id, state]) => this.#catchUp(id, state, lostAt)));
  }

  async #catchUp(dialogId: number, state: DialogState, lostAt: number): Promise<void> {
    try {
      // The command connection reconnects on its own schedule; history needs it.
      if (!(await this.#whenCmdReady(5000))) throw new Error('command connection not back within 5 s');
      if (state.lastId === undefined) {
        // Nothing delivered yet: anything stored since the connection dropped was missed.
        const range = await this.#cmd.xrange(dialogStream(dialogId), `${lostAt}-0`, '+', 'COUNT', Math.max(1, this.#historyLength));
        this.#flush(dialogId, state, range.flatMap(([id, fields]) => eventFromStreamEntry(dialogId, id, fields) ?? []));
        return;
      }
      const result = await this.history(dialogId, state.lastId);
      // `ahead`: the stream was lost and restarted with older ids than ours; either way not provably continuous.
      if (result.status !== 'ok') {
        this.#log.warn({ dialog_id: dialogId, last_id: state.lastId }, 'history lost while Redis was away; clients told to resync');
        if (this.#dialogs.get(dialogId) === state) this.#handlers.onResync(dialogId);
        state.lastId = undefined;
        this.#flush(dialogId, state, []);
        return;
      }
      this.#flush(dialogId, state, result.events);
    } catch (err) {
      // Unknown whether events were missed: tell clients to refetch rather than risk a silent gap.
      this.#log.warn({ dialog_id: dialogId, err: String(err) }, 'catch-up after reconnect failed; clients told to resync');
      if (this.#dialogs.get(dialogId) === state) this.#handlers.onResync(dialogId);
      this.#flush(dialogId, state, []);
    }
  }

  #whenCmdReady(timeoutMs: number): Promise<boolean> {
    if (this.#cmd.status === 'ready') return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (ok: boolean) => {
        clearTimeout(timer);
        this.#cmd.off('ready', onReady);
        resolve(ok);
      };
      const onReady = () => done(true);
      const timer = setTimeout(() => done(false), timeoutMs);
      this.#cmd.on('ready', onReady);
    });
  }

  #flush(dialogId: number, state: DialogState, replayed: readonly BrokerEvent[]): void {
    const buffered = state.buffer ?? [];
    state.buffer = null;
    if (this.#dialogs.get(dialogId) !== state) return;
    for (const event of mergeReplay(replayed, buffered, state.lastId)) {
      state.lastId = event.id;
      this.#handlers.onEvent(event);
    }
  }
}
