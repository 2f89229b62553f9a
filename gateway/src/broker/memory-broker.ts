import type { Broker, BrokerHandlers, HistoryResult } from './broker.js';
import { compareEventIds, eventFrame, type BrokerEvent } from './protocol.js';
import { DEFAULT_IDEMPOTENCY_TTL_S, idempotencyKeyProblem, type PublishInput } from './publisher.js';

// The single-process broker (BROKER=memory): POST /internal/publish delivers directly and
// history lives in this process, capped per dialog, by age and by number of dialogs. It cannot
// work with more than one gateway process; the topology rules forbid that combination.

/** Limits of the in-memory history. */
export interface MemoryBrokerOptions {
  readonly historyLength: number;
  readonly historyTtlS: number;
  /** Most dialogs whose history is kept; the least recently published goes first (MEMORY_HISTORY_DIALOGS). */
  readonly maxDialogs: number;
  /** Seconds a publish's idempotency key is remembered (PUBLISH_IDEMPOTENCY_TTL_S). */
  readonly idempotencyTtlS?: number;
}

/** Most idempotency keys the memory broker remembers; the oldest go first. */
export const MEMORY_IDEMPOTENCY_KEYS_MAX = 100_000;

interface History {
  events: BrokerEvent[];
  touchedAt: number;
}

/** In-process fan-out with ids in the same `<ms>-<seq>` form as Redis stream ids. */
export class MemoryBroker implements Broker {
  readonly kind = 'memory' as const;
  readonly #handlers: BrokerHandlers;
  readonly #histories = new Map<number, History>();
  readonly #subscribed = new Set<number>();
  readonly #historyLength: number;
  readonly #ttlMs: number;
  readonly #maxDialogs: number;
  readonly #idempotencyTtlMs: number;
  /** `<dialog>:<key>` → first event id; insertion order is expiry order (one TTL for all). */
  readonly #firstIds = new Map<string, { id: string; expiresAt: number }>();
  #lastMs = 0;
  #seq = 0;

  /** Creates an empty broker. */
  constructor(options: MemoryBrokerOptions, handlers: BrokerHandlers) {
    this.#handlers = handlers;
    this.#historyLength = options.historyLength;
    this.#ttlMs = options.historyTtlS * 1000;
    this.#maxDialogs = options.maxDialogs;
    this.#idempotencyTtlMs = (options.idempotencyTtlS ?? DEFAULT_IDEMPOTENCY_TTL_S) * 1000;
  }

  async start(): Promise<void> {}

  isReady(): boolean {
    return true;
  }

  get subscribedCount(): number {
    return this.#subscribed.size;
  }

  async subscribe(dialogId: number): Promise<void> {
    this.#subscribed.add(dialogId);
  }

  unsubscribe(dialogId: number): void {
    this.#subscribed.delete(dialogId);
  }

  async history(dialogId: number, sinceId: string): Promise<HistoryResult> {
    const events = this.#live(dialogId)?.events;
    const oldest = events?.[0];
    if (!events || !oldest || compareEventIds(sinceId, oldest.id) < 0) return { status: 'gap' };
    const newest = events.at(-1)!.id;
    if (compareEventIds(sinceId, newest) > 0) return { status: 'ahead', newest };
    return { status: 'ok', events: events.filter((e) => compareEventIds(e.id, sinceId) > 0) };
  }

  async lastEventId(dialogId: number): Promise<string | undefined> {
    return this.#live(dialogId)?.events.at(-1)?.id;
  }

  async publish(input: PublishInput): Promise<string> {
    if (!Number.isSafeInteger(input.dialogId) || input.dialogId < 1) throw new TypeError(`dialogId must be a positive integer, got ${String(input.dialogId)}`);
    const now = Date.now();
    const idemKey = input.idempotencyKey === undefined ? undefined : `${input.dialogId}:${input.idempotencyKey}`;
    if (idemKey !== undefined) {
      const problem = idempotencyKeyProblem(input.idempotencyKey!);
      if (problem) throw new TypeError(`idempotencyKey ${problem}`);
      const first = this.#firstIds.get(idemKey);
      if (first && first.expiresAt > now) return first.id;
    }
    if (now > this.#lastMs) {
      this.#lastMs = now;
      this.#seq = 0;
    } else {
      this.#seq += 1;
    }
    const id = `${this.#lastMs}-${this.#seq}`;
    const json = eventFrame(id, input.type, input.dialogId, JSON.stringify(input.data ?? null), now);
    const event: BrokerEvent = { id, dialogId: input.dialogId, audience: input.audience ?? [], json };
    if (this.#historyLength > 0) {
      let history = this.#histories.get(input.dialogId);
      if (history) this.#histories.delete(input.dialogId);
      else history = { events: [], touchedAt: now };
      history.touchedAt = now;
      history.events.push(event);
      if (history.events.length > this.#historyLength) history.events.shift();
      // Re-inserting keeps the map in publish order, so the first key is the least recent.
      this.#histories.set(input.dialogId, history);
      if (this.#histories.size > this.#maxDialogs) this.#histories.delete(this.#histories.keys().next().value!);
    }
    if (idemKey !== undefined) {
      this.#firstIds.delete(idemKey);
      this.#firstIds.set(idemKey, { id, expiresAt: now + this.#idempotencyTtlMs });
      if (this.#firstIds.size > MEMORY_IDEMPOTENCY_KEYS_MAX) this.#firstIds.delete(this.#firstIds.keys().next().value!);
    }
    if (this.#subscribed.has(input.dialogId)) this.#handlers.onEvent(event);
    return id;
  }

  /** Drops histories and idempotency keys older than their TTL; called from the gateway's shared interval. */
  sweep(now = Date.now()): void {
    for (const [key, first] of this.#firstIds) {
      if (first.expiresAt > now) break;
      this.#firstIds.delete(key);
    }
    for (const [id, h] of this.#histories) {
      if (h.touchedAt + this.#ttlMs > now) break;
      this.#histories.delete(id);
    }
  }

  async close(): Promise<void> {
    this.#subscribed.clear();
    this.#histories.clear();
  }

  #live(dialogId: number): History | undefined {
    const h = this.#histories.get(dialogId);
    if (h && h.touchedAt + this.#ttlMs <= Date.now()) {
      this.#histories.delete(dialogId);
      return undefined;
    }
    return h;
  }
}
