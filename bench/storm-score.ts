import type { Outage } from '../test/reliability/traffic.js';

// Scoring of the reconnect storm (pure): for every time a client was away, when it had resumed —
// reconnected with since= and received every event published to its dialog while it was away —
// and over all clients, what was lost or repeated and how long each drained gateway's storm took.

/** One event the storm's publisher sent. */
export interface PublishedEvent {
  readonly text: string;
  readonly dialogId: number;
  /** Date.now() just before the publish call. */
  readonly at: number;
}

/** What one client saw, as the storm scores it. */
export interface StormClientView {
  readonly dialogId: number;
  readonly firstSeenAt: ReadonlyMap<string, number>;
  /** Times each text arrived as an event (the client's own de-duplication already applied). */
  readonly events: ReadonlyMap<string, number>;
  readonly outages: readonly Outage[];
  readonly wireRepeats: number;
}

/** One outage, resumed or not. */
export interface ResumedOutage {
  readonly closedAt: number;
  readonly code: number;
  readonly fromInstance: string;
  /** Undefined: never reconnected. */
  readonly openedAt?: number;
  /** Reconnected and every event published while away had arrived; undefined while one is missing. */
  readonly resumedAt?: number;
  /** Events of its dialog published while it was away. */
  readonly missed: number;
  /** The client's own wait before its first attempt, and its attempts until open. */
  readonly delayMs: number;
  readonly attempts: number;
}

/** One client's score. */
export interface StormClientScore {
  /** Events of its dialog published after `from` that never arrived. */
  readonly lost: number;
  /** Extra arrivals the app saw (0 for a client that de-duplicates by id). */
  readonly duplicates: number;
  /** Event frames the server sent this client twice (hidden from the app by the client). */
  readonly wireRepeats: number;
  readonly outages: readonly ResumedOutage[];
}

/** Published events grouped by dialog, each list in publish order (pure). */
export function byDialog(published: readonly PublishedEvent[]): Map<number, PublishedEvent[]> {
  const out = new Map<number, PublishedEvent[]>();
  for (const e of published) {
    const list = out.get(e.dialogId);
    if (list) list.push(e);
    else out.set(e.dialogId, [e]);
  }
  return out;
}

/** Scores one client against what was published to its dialog (`dialogs` from byDialog). */
export function scoreStormClient(client: StormClientView, dialogs: ReadonlyMap<number, readonly PublishedEvent[]>): StormClientScore {
  const mine = dialogs.get(client.dialogId) ?? [];
  let lost = 0;
  let duplicates = 0;
  for (const e of mine) {
    const times = client.events.get(e.text) ?? 0;
    if (times === 0) lost += 1;
    else duplicates += times - 1;
  }
  const outages = client.outages.map((o): ResumedOutage => {
    const base = { closedAt: o.closedAt, code: o.code, fromInstance: o.fromInstance ?? '', delayMs: o.delayMs, attempts: o.attempts };
    // Away from the close until connected again: what was published meanwhile must arrive by replay.
    const until = o.openedAt ?? Number.POSITIVE_INFINITY;
    const missed = mine.filter((e) => e.at >= o.closedAt && e.at < until);
    if (o.openedAt === undefined) return { ...base, missed: missed.length };
    let resumedAt: number | undefined = o.openedAt;
    for (const e of missed) {
      const seen = client.firstSeenAt.get(e.text);
      resumedAt = seen === undefined || resumedAt === undefined ? undefined : Math.max(resumedAt, seen);
    }
    return { ...base, openedAt: o.openedAt, ...(resumedAt !== undefined ? { resumedAt } : {}), missed: missed.length };
  });
  return { lost, duplicates, wireRepeats: client.wireRepeats, outages };
}

/** The storm of one drained gateway process: its clients, from its first close to the last of them resumed. */
export interface InstanceStorm {
  readonly instance: string;
  readonly clients: number;
  /** First close to last resume, ms; undefined when one of them never resumed. */
  readonly spanMs?: number;
}

/** Percentiles of a sample, in ms. */
export interface Spread {
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
  readonly samples: number;
}

/** Nearest-rank percentiles (pure); all zero for an empty sample. */
export function spread(values: readonly number[]): Spread {
  if (values.length === 0) return { p50: 0, p99: 0, max: 0, samples: 0 };
  const sorted = [...values].sort((a, b) => a - b);
  const at = (p: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
  return { p50: at(50), p99: at(99), max: sorted.at(-1)!, samples: sorted.length };
}

/**
 * Per drained gateway process (outages grouped by the instance the client was on; a blue/green
 * stand-in has its own instance id): how many clients it moved and how long until all of them
 * had resumed (pure).
 */
export function instanceStorms(outages: readonly ResumedOutage[]): InstanceStorm[] {
  const groups = new Map<string, { first: number; last: number; clients: number; unresumed: boolean }>();
  for (const o of outages) {
    const g = groups.get(o.fromInstance) ?? { first: o.closedAt, last: o.closedAt, clients: 0, unresumed: false };
    g.first = Math.min(g.first, o.closedAt);
    if (o.resumedAt === undefined) g.unresumed = true;
    else g.last = Math.max(g.last, o.resumedAt);
    g.clients += 1;
    groups.set(o.fromInstance, g);
  }
  return [...groups]
    .sort(([, a], [, b]) => a.first - b.first)
    .map(([instance, g]) => ({ instance, clients: g.clients, ...(g.unresumed ? {} : { spanMs: g.last - g.first }) }));
}
