import { createHash } from 'node:crypto';
import type pg from 'pg';
import type { DialogAccess } from './access.js';

// Database access for the API: one query per operation, parameters always bound.

/** A stored message as the API returns it; `event_id` is null until the message is published. */
export interface MessageRow {
  readonly id: number;
  readonly dialog_id: number;
  readonly sender: string;
  readonly text: string;
  readonly event_id: string | null;
  readonly created_at: string;
}

/** A message as an event's `data` carries it: the event id is the frame's own `id`, not a field here. */
export type MessageData = Omit<MessageRow, 'event_id'>;

/** The event `data` of a stored message. */
export function messageData(row: MessageRow): MessageData {
  const { event_id: _published, ...data } = row;
  return data;
}

const MESSAGE_COLUMNS = 'id::float8 AS id, dialog_id::float8 AS dialog_id, sender, text, event_id, created_at';

/** Reads a dialog's owner and allowed domains from the view the gateway also reads. */
export async function dialogAccess(db: pg.Pool, dialogId: number): Promise<DialogAccess | undefined> {
  const r = await db.query<{ dialog_id: string; assistant_id: string; user_id: string; allowed_domains: string[] }>(
    'SELECT dialog_id, assistant_id, user_id, allowed_domains FROM replyx_dialog_access WHERE dialog_id = $1',
    [dialogId],
  );
  const row = r.rows[0];
  return row && { dialogId: Number(row.dialog_id), assistantId: Number(row.assistant_id), userId: Number(row.user_id), allowedDomains: row.allowed_domains };
}

/** The SHA-256 a visitor key is stored as (keys are 256 random bits: no slow hash needed). */
export function visitorKeyHash(visitorKey: string): Buffer {
  return createHash('sha256').update(visitorKey, 'utf8').digest();
}

/** An assistant's owner and allowed domains, or undefined when it does not exist. */
export async function assistantById(db: pg.Pool, assistantId: number): Promise<{ userId: number; allowedDomains: string[] } | undefined> {
  const r = await db.query<{ user_id: string; allowed_domains: string[] }>('SELECT user_id, allowed_domains FROM assistants WHERE id = $1', [assistantId]);
  const row = r.rows[0];
  return row && { userId: Number(row.user_id), allowedDomains: row.allowed_domains };
}

/** True when the site token `jti` is revoked (the view the gateway reads). */
export async function isSiteTokenRevoked(db: pg.Pool, jti: string): Promise<boolean> {
  const r = await db.query('SELECT 1 FROM replyx_revoked_site_tokens WHERE jti = $1', [jti]);
  return (r.rowCount ?? 0) > 0;
}

/** The dialog of `assistantId` whose visitor key hashes to `keyHash`, if any. */
export async function dialogByVisitorKey(db: pg.Pool, assistantId: number, keyHash: Buffer): Promise<number | undefined> {
  const r = await db.query<{ id: string }>('SELECT id FROM dialogs WHERE visitor_key_hash = $1 AND assistant_id = $2', [keyHash, assistantId]);
  return r.rows[0] ? Number(r.rows[0].id) : undefined;
}

/** Creates a dialog for a new widget visitor, storing only the hash of its key. */
export async function createVisitorDialog(db: pg.Pool, assistantId: number, keyHash: Buffer): Promise<number> {
  const r = await db.query<{ id: string }>('INSERT INTO dialogs (assistant_id, visitor_key_hash) VALUES ($1, $2) RETURNING id', [assistantId, keyHash]);
  return Number(r.rows[0]!.id);
}

/** Registers an issued site token (who may revoke it, until when it matters). */
export async function registerSiteToken(db: pg.Pool, t: { jti: string; userId: number; assistantId: number; dialogId?: number; exp: number }): Promise<void> {
  await db.query('INSERT INTO site_tokens (jti, user_id, assistant_id, dialog_id, expires_at) VALUES ($1, $2, $3, $4, to_timestamp($5))', [t.jti, t.userId, t.assistantId, t.dialogId ?? null, t.exp]);
}

/**
 * Revokes a site token issued to `userId`; false when there is no such token of that user (the
 * same answer either way). Revocations live until the token would have expired anyway; older
 * ones are dropped here.
 */
export async function revokeSiteToken(db: pg.Pool, userId: number, jti: string): Promise<boolean> {
  const r = await db.query(
    `INSERT INTO site_token_revocations (jti, expires_at)
     SELECT jti, expires_at FROM site_tokens WHERE jti = $1 AND user_id = $2
     ON CONFLICT (jti) DO NOTHING RETURNING jti`,
    [jti, userId],
  );
  if ((r.rowCount ?? 0) === 0) {
    const owned = await db.query('SELECT 1 FROM site_tokens WHERE jti = $1 AND user_id = $2', [jti, userId]);
    if ((owned.rowCount ?? 0) === 0) return false;
  }
  await db.query("DELETE FROM site_token_revocations WHERE expires_at < now() - interval '1 day'");
  return true;
}

/** An Idempotency-Key of a request, as stored: who and where, the key, and what was asked. */
export interface IdempotencyClaim {
  /** `<kind>:<credential subject>:dialog:<id>` (see idempotency.ts). */
  readonly scope: string;
  readonly key: string;
  /** SHA-256 of the route and body. */
  readonly requestHash: Buffer;
  /** Seconds a stored key answers retries. */
  readonly retentionS: number;
}

/** What storing a message did: stored now, or an earlier request with the same key answered. */
export type StoreOutcome =
  | { readonly kind: 'stored'; readonly message: MessageRow }
  | { readonly kind: 'replayed'; readonly message: MessageRow }
  | { readonly kind: 'key-reused' };

/** A pooled connection held by a transaction, and how to give it back. */
export interface HeldClient {
  readonly client: pg.PoolClient;
  /** Returns the connection; one that failed (or whose server went away while held) is discarded. */
  release(err?: Error): void;
}

/**
 * Checks out a connection that survives its server going away while it is held: pg emits
 * 'error' on a checked-out client with no listener of its own, which would end the worker.
 * The error is kept instead; the next query fails, and release discards the connection.
 */
export async function holdClient(db: pg.Pool): Promise<HeldClient> {
  const client = await db.connect();
  let lost: Error | undefined;
  const onError = (err: Error): void => {
    lost = err;
  };
  client.on('error', onError);
  return {
    client,
    release(err?: Error): void {
      client.off('error', onError);
      client.release(err ?? lost);
    },
  };
}

/**
 * Stores a message and its outbox row in one transaction (and, with `claim`, the idempotency
 * key): when it commits the message is durable and will be published. A key already used by
 * this scope answers the first message instead (a concurrent first request is waited for).
 * `publishDelayMs` keeps the relay off the row while the writing request publishes it itself.
 */
export async function storeMessage(
  db: pg.Pool,
  input: { dialogId: number; sender: string; text: string; claim?: IdempotencyClaim; publishDelayMs: number },
): Promise<StoreOutcome> {
  const held = await holdClient(db);
  const client = held.client;
  let release: Error | undefined;
  try {
    await client.query('BEGIN');
    const c = input.claim;
    if (c) {
      await client.query(`DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND created_at < now() - make_interval(secs => $3)`, [c.scope, c.key, c.retentionS]);
      // Blocks while another transaction holds the same key; then conflicts (it committed) or inserts (it rolled back).
      const claimed = await client.query('INSERT INTO idempotency_keys (scope, key, request_hash) VALUES ($1, $2, $3) ON CONFLICT (scope, key) DO NOTHING RETURNING 1', [c.scope, c.key, c.requestHash]);
      if ((claimed.rowCount ?? 0) === 0) {
        const first = await client.query<{ request_hash: Buffer; message_id: string | null }>('SELECT request_hash, message_id FROM idempotency_keys WHERE scope = $1 AND key = $2', [c.scope, c.key]);
        await client.query('ROLLBACK');
        const row = first.rows[0];
        if (!row || row.message_id === null || !row.request_hash.equals(c.requestHash)) return { kind: 'key-reused' };
        const message = await messageById(db, Number(row.message_id));
        return message ? { kind: 'replayed', message } : { kind: 'key-reused' };
      }
    }
    const r = await client.query<MessageRow>(`INSERT INTO messages (dialog_id, sender, text) VALUES ($1, $2, $3) RETURNING ${MESSAGE_COLUMNS}`, [input.dialogId, input.sender, input.text]);
    const message = normalise(r.rows[0]!);
    await client.query('INSERT INTO message_outbox (message_id, next_attempt_at) VALUES ($1, now() + make_interval(secs => $2))', [message.id, input.publishDelayMs / 1000]);
    if (c) await client.query('UPDATE idempotency_keys SET message_id = $3 WHERE scope = $1 AND key = $2', [c.scope, c.key, message.id]);
    await client.query('COMMIT');
    return { kind: 'stored', message };
  } catch (err) {
    release = err as Error;
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    // A connection that failed mid-transaction is not reused.
    held.release(release);
  }
}

/** One stored message by id. */
export async function messageById(db: pg.Pool, id: number): Promise<MessageRow | undefined> {
  const r = await db.query<MessageRow>(`SELECT ${MESSAGE_COLUMNS} FROM messages WHERE id = $1`, [id]);
  return r.rows[0] && normalise(r.rows[0]);
}

/** Records that messages were published (their event ids) and removes their outbox rows, in one statement. */
export async function markPublished(db: pg.Pool | pg.PoolClient, published: readonly { messageId: number; eventId: string }[]): Promise<void> {
  if (published.length === 0) return;
  await db.query(
    `WITH p AS (SELECT * FROM unnest($1::bigint[], $2::text[]) AS t(id, event_id)),
          done AS (DELETE FROM message_outbox o USING p WHERE o.message_id = p.id)
     UPDATE messages m SET event_id = p.event_id FROM p WHERE m.id = p.id`,
    [published.map((p) => p.messageId), published.map((p) => p.eventId)],
  );
}

/** Messages of a dialog with id greater than `since`, oldest first. */
export async function listMessages(db: pg.Pool, dialogId: number, since: number, limit: number): Promise<MessageRow[]> {
  const r = await db.query<MessageRow>(`SELECT ${MESSAGE_COLUMNS} FROM messages WHERE dialog_id = $1 AND id > $2 ORDER BY id LIMIT $3`, [dialogId, since, limit]);
  return r.rows.map(normalise);
}

function normalise(row: MessageRow): MessageRow {
  const created = row.created_at as unknown;
  return { ...row, created_at: created instanceof Date ? created.toISOString() : String(created) };
}

/** The outbox: messages stored and not yet published, and the age of the oldest in seconds (what the metrics report). */
export async function outboxState(db: pg.Pool): Promise<{ pending: number; oldestAgeSeconds: number }> {
  const r = await db.query<{ pending: number; age: number }>(
    'SELECT count(*)::float8 AS pending, COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8 AS age FROM message_outbox',
  );
  const row = r.rows[0];
  return { pending: row?.pending ?? 0, oldestAgeSeconds: row?.age ?? 0 };
}

// Connection-level failures (SQLSTATE class 08, shutdown 57P01-57P03) and the driver's own
// network errors: the database was not there, so the request may be retried.
const UNAVAILABLE_SQLSTATE = /^(08|57P0[123])/;
const UNAVAILABLE_MESSAGE = /Connection terminated|connect ECONNREFUSED|ECONNRESET|timeout exceeded when trying to connect|Client has encountered a connection error|Connection closed/i;

/** True when `err` means the database was unreachable (answer 503, retry), not that the request was wrong. */
export function isDatabaseUnavailable(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown } | null;
  if (!e) return false;
  if (typeof e.code === 'string' && (UNAVAILABLE_SQLSTATE.test(e.code) || e.code === 'ECONNREFUSED' || e.code === 'ECONNRESET')) return true;
  return typeof e.message === 'string' && UNAVAILABLE_MESSAGE.test(e.message);
}

/** Deletes every message of a probe dialog; resolves with how many, or undefined when the dialog is not a probe dialog. */
export async function clearProbeDialog(db: pg.Pool, dialogId: number): Promise<number | undefined> {
  const probe = await db.query<{ probe: boolean }>('SELECT probe FROM dialogs WHERE id = $1', [dialogId]);
  if (probe.rows[0]?.probe !== true) return undefined;
  return (await db.query('DELETE FROM messages WHERE dialog_id = $1', [dialogId])).rowCount ?? 0;
}
