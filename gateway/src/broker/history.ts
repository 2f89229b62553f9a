import type { Redis } from 'ioredis';
import type { HistoryResult } from './broker.js';
import { compareEventIds, dialogStream, eventFromStreamEntry, type BrokerEvent } from './protocol.js';

// Reading a dialog's history after a resume id, shared by the gateway's Redis broker and the
// reference backend's WebSocket mode, so both judge continuity the same way.

/**
 * The events after `sinceId` (at most `limit`), or `gap` when continuity cannot be proven (no
 * stream, or `sinceId` older than the oldest retained event), or `ahead` when `sinceId` is newer
 * than the newest event (an id this stream never issued). One MULTI, so the three reads agree.
 */
export async function readHistory(redis: Redis, dialogId: number, sinceId: string, limit: number): Promise<HistoryResult> {
  const stream = dialogStream(dialogId);
  const results = await redis
    .multi()
    .xrange(stream, '-', '+', 'COUNT', 1)
    .xrevrange(stream, '+', '-', 'COUNT', 1)
    // Inclusive start (`(id` fails for the largest id Redis allows); the entry at `sinceId` is dropped below.
    .xrange(stream, sinceId, '+', 'COUNT', Math.max(1, limit) + 1)
    .exec();
  if (!results) throw new Error('history: transaction aborted');
  type Entries = [string, string[]][];
  const [[firstErr, first], [lastErr, last], [rangeErr, range]] = results as [[Error | null, Entries], [Error | null, Entries], [Error | null, Entries]];
  if (firstErr ?? lastErr ?? rangeErr) throw firstErr ?? lastErr ?? rangeErr;
  const oldest = first[0]?.[0];
  const newest = last[0]?.[0];
  // Everything after `sinceId` is retained only if the oldest retained id is not newer than it.
  if (oldest === undefined || newest === undefined || compareEventIds(sinceId, oldest) < 0) return { status: 'gap' };
  if (compareEventIds(sinceId, newest) > 0) return { status: 'ahead', newest };
  const events: BrokerEvent[] = [];
  for (const [id, fields] of range) {
    if (events.length === limit) break;
    if (compareEventIds(id, sinceId) <= 0) continue;
    const ev = eventFromStreamEntry(dialogId, id, fields);
    if (ev) events.push(ev);
  }
  return { status: 'ok', events };
}
