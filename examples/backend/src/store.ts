import { createHash } from 'node:crypto';
import type pg from 'pg';
import type { DialogAccess } from './access.js';

// Database access for the API: one query per operation, parameters always bound.

/** A stored message, as the API returns it and as the event's `data`. */
export interface MessageRow {
  readonly id: number;
  readonly dialog_id: number;
  readonly sender: string;
  readonly text: string;
  readonly event_id: string | null;
  readonly created_at: string;
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

/** Inserts a message and returns the stored row. */
export async function insertMessage(db: pg.Pool, dialogId: number, sender: string, text: string): Promise<MessageRow> {
  const r = await db.query<MessageRow>(`INSERT INTO messages (dialog_id, sender, text) VALUES ($1, $2, $3) RETURNING ${MESSAGE_COLUMNS}`, [dialogId, sender, text]);
  return normalise(r.rows[0]!);
}

/** Records the broker event id of a published message. */
export async function setEventId(db: pg.Pool, messageId: number, eventId: string): Promise<void> {
  await db.query('UPDATE messages SET event_id = $2 WHERE id = $1', [messageId, eventId]);
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

/**
 * Stored messages that were never published (event_id NULL: publishing failed) and the age of
 * the oldest in seconds: what the outbox metrics report.
 */
export async function unpublishedMessages(db: pg.Pool): Promise<{ pending: number; oldestAgeSeconds: number }> {
  const r = await db.query<{ pending: number; age: number }>(
    'SELECT count(*)::float8 AS pending, COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8 AS age FROM messages WHERE event_id IS NULL',
  );
  const row = r.rows[0];
  return { pending: row?.pending ?? 0, oldestAgeSeconds: row?.age ?? 0 };
}

/** Deletes every message of a probe dialog; resolves with how many, or undefined when the dialog is not a probe dialog. */
export async function clearProbeDialog(db: pg.Pool, dialogId: number): Promise<number | undefined> {
  const probe = await db.query<{ probe: boolean }>('SELECT probe FROM dialogs WHERE id = $1', [dialogId]);
  if (probe.rows[0]?.probe !== true) return undefined;
  return (await db.query('DELETE FROM messages WHERE dialog_id = $1', [dialogId])).rowCount ?? 0;
}
