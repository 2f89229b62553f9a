import type { SentMessage } from './traffic.js';

// Scoring of one fault (pure): what was accepted, what each client got, what the database
// holds, and how long the stack took to deliver normally again.

/** What one client saw, as scoring needs it. */
export interface ClientView {
  readonly name: string;
  readonly dialogId: number;
  readonly events: ReadonlyMap<string, number>;
  readonly refetched: ReadonlySet<string>;
  readonly firstSeenAt: ReadonlyMap<string, number>;
  readonly eventIds: ReadonlyMap<string, string>;
}

/** The outcome of one fault. */
export interface FaultScore {
  readonly fault: string;
  /** Messages the publisher sent in this fault's window. */
  readonly messages: number;
  readonly accepted: number;
  /** Refused with a 4xx or given up: these are failures too. */
  readonly rejected: number;
  /** Attempts beyond the first (the publisher's retries). */
  readonly retries: number;
  /** (client, accepted message of its dialog) pairs never delivered, as an event or by a resync refetch. */
  readonly missing: number;
  /** Extra deliveries of one message to one client as events. */
  readonly duplicateDeliveries: number;
  /** Messages stored more than once (rows beyond the first). */
  readonly duplicateRows: number;
  /** Accepted messages with no stored row at all. */
  readonly unstored: number;
  /** Deliveries whose event id differs from the one the API answered with. */
  readonly eventIdMismatches: number;
  /** From the fault until the last message that needed a retry or arrived more than `lateMs` late was delivered everywhere; 0 when nothing was disturbed. */
  readonly recoveryMs: number;
  readonly examples: readonly string[];
}

/** A message is disturbed when it needed a retry or reached some client more than this after being accepted. */
export const LATE_MS = 1000;

/** Scores one fault window (pure). `rows` counts stored rows by text. */
export function scoreFault(input: {
  readonly fault: string;
  readonly sent: readonly SentMessage[];
  readonly clients: readonly ClientView[];
  readonly rows: ReadonlyMap<string, number>;
  readonly faultAt: number;
  readonly lateMs?: number;
}): FaultScore {
  const lateMs = input.lateMs ?? LATE_MS;
  let accepted = 0;
  let rejected = 0;
  let retries = 0;
  let missing = 0;
  let duplicateDeliveries = 0;
  let duplicateRows = 0;
  let unstored = 0;
  let eventIdMismatches = 0;
  let recoveredAt = input.faultAt;
  const examples: string[] = [];
  const note = (line: string) => {
    if (examples.length < 8) examples.push(line);
  };
  for (const m of input.sent) {
    retries += Math.max(0, m.attempts - 1);
    const stored = input.rows.get(m.text) ?? 0;
    if (stored > 1) {
      duplicateRows += stored - 1;
      note(`${m.text} stored ${stored} times (attempts ${m.attempts}, failures ${m.failures.join(',')})`);
    }
    if (m.rejected !== undefined || m.acceptedAt === undefined) {
      rejected += 1;
      note(`${m.text} not accepted: ${m.rejected ?? 'no answer'}`);
      continue;
    }
    accepted += 1;
    if (stored === 0) {
      unstored += 1;
      note(`${m.text} accepted but not stored`);
    }
    let deliveredEverywhereAt = m.acceptedAt;
    let disturbed = m.attempts > 1;
    for (const c of input.clients) {
      if (c.dialogId !== m.dialogId) continue;
      const times = c.events.get(m.text) ?? 0;
      if (times > 1) {
        duplicateDeliveries += times - 1;
        note(`${c.name} got ${m.text} ${times} times`);
      }
      const id = c.eventIds.get(m.text);
      if (id !== undefined && m.eventId !== undefined && id !== m.eventId) {
        eventIdMismatches += 1;
        note(`${c.name} got ${m.text} as event ${id}, the API answered ${m.eventId}`);
      }
      const at = c.firstSeenAt.get(m.text);
      if (times === 0 && !c.refetched.has(m.text)) {
        missing += 1;
        note(`${c.name} never got ${m.text} (accepted ${m.eventId ?? 'without event id'})`);
        continue;
      }
      if (at !== undefined) {
        deliveredEverywhereAt = Math.max(deliveredEverywhereAt, at);
        if (at - m.acceptedAt > lateMs) disturbed = true;
      }
    }
    if (disturbed) recoveredAt = Math.max(recoveredAt, deliveredEverywhereAt);
  }
  return {
    fault: input.fault,
    messages: input.sent.length,
    accepted,
    rejected,
    retries,
    missing,
    duplicateDeliveries,
    duplicateRows,
    unstored,
    eventIdMismatches,
    recoveryMs: recoveredAt - input.faultAt,
    examples,
  };
}

/** The scores as a Markdown table (docs/reliability.md shows one). */
export function scoreTable(scores: readonly (FaultScore & { readonly reconnected?: string; readonly cutRequests?: number })[]): string {
  const head = ['fault', 'messages', 'accepted', 'retries', 'missing', 'dup deliveries', 'dup rows', 'clients reconnected', 'requests cut', 'recovery'];
  const rows = scores.map((s) => [s.fault, s.messages, s.accepted, s.retries, s.missing, s.duplicateDeliveries, s.duplicateRows, s.reconnected ?? '-', s.cutRequests ?? '-', `${(s.recoveryMs / 1000).toFixed(1)} s`].map(String));
  return [head, head.map(() => '---'), ...rows].map((r) => `| ${r.join(' | ')} |`).join('\n');
}
