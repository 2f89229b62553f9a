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
