import { compareEventIds } from '../../../client/src/index.js';

// What a demo page shows: the dialog's messages by id, each once. Pure (no DOM), so the rules
// that keep the screen free of gaps and doubles are unit-tested; the pages only render it.

/** A message as the API stores it and as events carry it (`event.data`). */
export interface MessageRow {
  readonly id: number;
  readonly dialog_id: number;
  readonly sender: string;
  readonly text: string;
  readonly event_id: string | null;
}

/** One row on screen. `deliveries` counts the live events that carried it (0: it came from the API). */
export interface ShownMessage {
  readonly id: number;
  readonly sender: string;
  readonly text: string;
  readonly eventId: string | null;
  readonly deliveries: number;
}

/** True when `value` has the shape of a stored message (events of other types are ignored). */
export function isMessageRow(value: unknown): value is MessageRow {
  const v = value as Partial<MessageRow> | null;
  return typeof v === 'object' && v !== null && Number.isSafeInteger(v.id) && typeof v.text === 'string' && typeof v.sender === 'string';
}

/** The list as the API answered it (a refetch after `resync` replaces everything shown). */
export function fromHistory(rows: readonly MessageRow[]): ShownMessage[] {
  return [...rows].sort((a, b) => a.id - b.id).map((r) => ({ id: r.id, sender: r.sender, text: r.text, eventId: r.event_id, deliveries: 0 }));
}

/**
 * Applies one live event by upsert on the message id (an event held during a refetch may already
 * be in the answer), keeping id order. A message delivered twice shows once, with `deliveries` 2:
 * the pages expose that count so a test sees a double the client let through.
 */
export function applyEvent(list: readonly ShownMessage[], row: MessageRow, eventId: string): ShownMessage[] {
  const at = list.findIndex((m) => m.id === row.id);
  if (at >= 0) return list.map((m, i) => (i === at ? { ...m, text: row.text, eventId, deliveries: m.deliveries + 1 } : m));
  const next = [...list, { id: row.id, sender: row.sender, text: row.text, eventId, deliveries: 1 }];
  return next.sort((a, b) => a.id - b.id);
}

/** The event id to resume after: the newest event id among the messages shown (undefined: none published yet). */
export function resumeAfter(list: readonly ShownMessage[]): string | undefined {
  let newest: string | undefined;
  for (const m of list) if (m.eventId && (newest === undefined || compareEventIds(m.eventId, newest) > 0)) newest = m.eventId;
  return newest;
}
