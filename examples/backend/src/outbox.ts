import type pg from 'pg';
import type { Logger } from 'pino';
import type { PublishResult } from '@replyx/gateway/broker/publisher';
import { holdClient, markPublished, type MessageRow } from './store.js';

// The relay of the transactional outbox. A stored message has an outbox row; the request that
// stored it publishes it at once (publishNow) and the relay, in every worker, publishes whatever
// is left: rows whose writer failed to publish (Redis down) or died. Rows are claimed with
// SELECT … FOR UPDATE SKIP LOCKED, so four workers never publish the same row at the same time,
// and every publish carries the idempotency key `message:<id>:<created_at>`, so a row published twice (a
// writer and the relay, or a relay whose delete failed) still yields one event with one id.

/**
 * The idempotency key a message is published with (one event per message): its id and its
 * creation time, because ids alone repeat when the database is recreated while Redis still
 * remembers the old keys (a reset dev stack, a restored backup), and a repeat would be swallowed.
 */
export function messageIdempotencyKey(message: Pick<MessageRow, 'id' | 'created_at'>): string {
  return `message:${message.id}:${message.created_at}`;
}

/** Delay before retry number `attempts + 1`: doubling from `baseMs`, capped at `maxMs`. */
export function retryDelayMs(attempts: number, baseMs: number, maxMs: number): number {
  return Math.min(maxMs, baseMs * 2 ** Math.min(Math.max(0, attempts), 30));
}

/** Settings of the relay; every one has a documented default. */
export interface RelayOptions {
  /** How often an idle relay looks for rows (OUTBOX_POLL_MS). Default 500. */
  readonly pollMs: number;
  /** First retry delay after a failed publish. Default 100. */
  readonly retryBaseMs?: number;
  /** Longest retry delay (OUTBOX_RETRY_MAX_MS). Default 5000. */
  readonly retryMaxMs: number;
  /** Rows claimed per pass. Default 100. */
  readonly batchSize?: number;
  /** Idempotency keys older than this are deleted (IDEMPOTENCY_RETENTION_S). */
  readonly idempotencyRetentionS: number;
}

/** What the relay needs from the worker. */
export interface RelayDeps {
  readonly db: pg.Pool;
  readonly log: Logger;
  /** Publishes a message's event with its idempotency key. */
  readonly publish: (message: MessageRow) => Promise<PublishResult>;
  /** Called once per message published for the first time (local delivery, metrics). */
  readonly onPublished: (message: MessageRow, eventId: string) => void;
  /** Called for each failed publish attempt. */
  readonly onFailed: (err: unknown) => void;
}

const CLEANUP_EVERY_MS = 60_000;

/** Publishes outbox rows until each one is published; one per worker. */
export class OutboxRelay {
  readonly #deps: RelayDeps;
  readonly #pollMs: number;
  readonly #retryBaseMs: number;
  readonly #retryMaxMs: number;
  readonly #batchSize: number;
  readonly #retentionS: number;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #stopped = false;
  #lastCleanup = 0;
  #lastWarning = 0;

  /** Creates a stopped relay. */
  constructor(deps: RelayDeps, options: RelayOptions) {
    this.#deps = deps;
    this.#pollMs = options.pollMs;
    this.#retryBaseMs = options.retryBaseMs ?? 100;
    this.#retryMaxMs = options.retryMaxMs;
    this.#batchSize = options.batchSize ?? 100;
    this.#retentionS = options.idempotencyRetentionS;
  }

  /** Starts polling. */
  start(): void {
    this.#stopped = false;
    this.#schedule(0);
  }

  /** Stops polling and waits for a pass in progress. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#running;
  }

  /**
   * Publishes a just-stored message (the writer's fast path): the event id, or undefined when
   * publishing failed and the relay will retry. Never throws: the message is durable already.
   */
  async publishNow(message: MessageRow): Promise<string | undefined> {
    let result: PublishResult;
    try {
      result = await this.#deps.publish(message);
    } catch (err) {
      this.#deps.onFailed(err);
      this.#warn(err, 'publish failed; the outbox relay retries');
      return undefined;
    }
    if (!result.duplicate) this.#deps.onPublished(message, result.id);
    try {
      await markPublished(this.#deps.db, [{ messageId: message.id, eventId: result.id }]);
    } catch (err) {
      // The relay publishes it again later; the idempotency key makes that the same event.
      this.#warn(err, 'could not mark a published message; the relay re-publishes it idempotently');
    }
    return result.id;
  }

  /** One pass over due rows (claimed, published in id order, marked); how many were published. */
  async pass(): Promise<number> {
    // Held while Redis is called: Postgres may go away meanwhile without ending the worker.
    const held = await holdClient(this.#deps.db);
    const client = held.client;
    let broken: Error | undefined;
    try {
      await client.query('BEGIN');
      const due = await client.query<MessageRow & { attempts: number }>(
        `SELECT m.id::float8 AS id, m.dialog_id::float8 AS dialog_id, m.sender, m.text, m.event_id, m.created_at, o.attempts
           FROM message_outbox o JOIN messages m ON m.id = o.message_id
          WHERE o.next_attempt_at <= now()
          ORDER BY o.message_id
          LIMIT $1
          FOR UPDATE OF o SKIP LOCKED`,
        [this.#batchSize],
      );
      const done: { messageId: number; eventId: string }[] = [];
      let failed: { attempts: number; err: unknown; ids: number[] } | undefined;
      for (const [i, raw] of due.rows.entries()) {
        const { attempts, ...row } = raw;
        const message: MessageRow = { ...row, created_at: raw.created_at as unknown instanceof Date ? (raw.created_at as unknown as Date).toISOString() : String(raw.created_at) };
        try {
          const result = await this.#deps.publish(message);
          if (!result.duplicate) this.#deps.onPublished(message, result.id);
          done.push({ messageId: message.id, eventId: result.id });
        } catch (err) {
          this.#deps.onFailed(err);
          // Redis is most likely away: the rest of the batch waits with this row.
          failed = { attempts, err, ids: due.rows.slice(i).map((r) => r.id) };
          break;
        }
      }
      await markPublished(client, done);
      if (failed) {
        const delay = retryDelayMs(failed.attempts, this.#retryBaseMs, this.#retryMaxMs);
        await client.query(
          'UPDATE message_outbox SET attempts = attempts + 1, next_attempt_at = now() + make_interval(secs => $2), last_error = $3 WHERE message_id = ANY($1::bigint[])',
          [failed.ids, delay / 1000, String((failed.err as Error)?.message ?? failed.err).slice(0, 500)],
        );
        this.#warn(failed.err, `outbox relay: publish failed; ${failed.ids.length} message(s) retried in ${delay} ms`);
      }
      await client.query('COMMIT');
      return done.length;
    } catch (err) {
      broken = err as Error;
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      held.release(broken);
    }
  }

  async #cleanup(): Promise<void> {
    if (Date.now() - this.#lastCleanup < CLEANUP_EVERY_MS) return;
    this.#lastCleanup = Date.now();
    await this.#deps.db.query('DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1)', [this.#retentionS]);
  }

  #schedule(ms: number): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#running = this.#tick();
    }, ms);
    this.#timer.unref();
  }

  async #tick(): Promise<void> {
    let next = this.#pollMs;
    try {
      // A full batch means more may be due: go again at once.
      if ((await this.pass()) >= this.#batchSize) next = 0;
      await this.#cleanup();
    } catch (err) {
      this.#warn(err, 'outbox relay pass failed (database); retrying');
    }
    this.#schedule(next);
  }

  // One warning per 5 s: an outage must not flood the log at the poll rate.
  #warn(err: unknown, msg: string): void {
    const now = Date.now();
    if (now - this.#lastWarning < 5000) return;
    this.#lastWarning = now;
    this.#deps.log.warn({ err: String((err as Error)?.message ?? err) }, msg);
  }
}
