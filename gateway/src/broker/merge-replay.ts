import { compareEventIds, type BrokerEvent } from './protocol.js';

// Resume without gap or duplicate: while a connection (the hub) or the broker (after a Redis
// reconnect) reads history, live events keep arriving and are buffered. Both lists are merged
// here. It lives with the broker because it only knows events and their ids; the hub imports it
// from here, the broker never imports the hub.

/**
 * Replayed history plus events buffered live during the replay, in id order, without
 * duplicates and without anything at or before `after` (the last id already delivered).
 */
export function mergeReplay(replayed: readonly BrokerEvent[], buffered: readonly BrokerEvent[], after: string | undefined): BrokerEvent[] {
  const all = buffered.length === 0 ? replayed.slice() : [...replayed, ...buffered].sort((a, b) => compareEventIds(a.id, b.id));
  const out: BrokerEvent[] = [];
  let last = after;
  for (const event of all) {
    if (last !== undefined && compareEventIds(event.id, last) <= 0) continue;
    out.push(event);
    last = event.id;
  }
  return out;
}
