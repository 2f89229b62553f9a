import { describe, expect, it } from 'vitest';
import { scoreFault, scoreTable, type ClientView } from './score.js';
import type { SentMessage } from './traffic.js';

const msg = (seq: number, over: Partial<SentMessage> = {}): SentMessage => ({
  seq,
  text: `p:${seq}`,
  dialogId: 1,
  key: `k${seq}`,
  firstSentAt: 1000 + seq,
  attempts: 1,
  failures: [],
  acceptedAt: 1010 + seq,
  eventId: `${seq}-0`,
  ...over,
});

function client(name: string, got: Record<string, { times?: number; at: number; id?: string }>, opts: { dialogId?: number; refetched?: string[] } = {}): ClientView {
  return {
    name,
    dialogId: opts.dialogId ?? 1,
    events: new Map(Object.entries(got).filter(([, v]) => (v.times ?? 1) > 0).map(([t, v]) => [t, v.times ?? 1])),
    refetched: new Set(opts.refetched ?? []),
    firstSeenAt: new Map(Object.entries(got).map(([t, v]) => [t, v.at])),
    eventIds: new Map(Object.entries(got).filter(([, v]) => (v.times ?? 1) > 0).map(([t, v]) => [t, v.id ?? `${t.slice(2)}-0`])),
  };
}

const rows = (texts: string[], n = 1) => new Map(texts.map((t) => [t, n]));

describe('scoreFault', () => {
  it('scores an undisturbed window as clean with no recovery time', () => {
    const sent = [msg(0), msg(1)];
    const c = client('a', { 'p:0': { at: 1020 }, 'p:1': { at: 1021 } });
    const s = scoreFault({ fault: 'f', sent, clients: [c], rows: rows(['p:0', 'p:1']), faultAt: 1000 });
    expect(s).toMatchObject({ messages: 2, accepted: 2, rejected: 0, retries: 0, missing: 0, duplicateDeliveries: 0, duplicateRows: 0, unstored: 0, eventIdMismatches: 0, recoveryMs: 0 });
  });

  it('counts missing per client of the dialog only, and a resync refetch as delivered', () => {
    const sent = [msg(0), msg(1, { dialogId: 2 })];
    const a = client('a', {});
    const b = client('b', {}, { refetched: ['p:0'] });
    const other = client('c', {}, { dialogId: 3 });
    const s = scoreFault({ fault: 'f', sent, clients: [a, b, other], rows: rows(['p:0', 'p:1']), faultAt: 0 });
    expect(s.missing).toBe(1);
    expect(s.examples.join('\n')).toContain('a never got p:0');
  });

  it('counts extra event deliveries, extra rows, unstored and rejected messages', () => {
    const sent = [msg(0, { attempts: 3, failures: [502, 0] }), msg(1, { acceptedAt: undefined, rejected: '400 BAD' }), msg(2)];
    const c = client('a', { 'p:0': { times: 3, at: 1020 }, 'p:2': { at: 1030 } });
    const s = scoreFault({ fault: 'f', sent, clients: [c], rows: new Map([['p:0', 2]]), faultAt: 0 });
    expect(s).toMatchObject({ accepted: 2, rejected: 1, retries: 2, duplicateDeliveries: 2, duplicateRows: 1, unstored: 1 });
  });

  it('flags an event id that differs from the API answer', () => {
    const s = scoreFault({ fault: 'f', sent: [msg(0)], clients: [client('a', { 'p:0': { at: 1020, id: '9-9' } })], rows: rows(['p:0']), faultAt: 0 });
    expect(s.eventIdMismatches).toBe(1);
  });

  it('measures recovery to the last delivery of a retried or late message', () => {
    const sent = [msg(0), msg(1, { attempts: 2, acceptedAt: 3000 }), msg(2, { acceptedAt: 3100 })];
    const c = client('a', { 'p:0': { at: 1020 }, 'p:1': { at: 3500 }, 'p:2': { at: 5000 } });
    // p:2 arrived 1.9 s after it was accepted: late, so recovery runs to its delivery.
    expect(scoreFault({ fault: 'f', sent, clients: [c], rows: rows(['p:0', 'p:1', 'p:2']), faultAt: 2000 }).recoveryMs).toBe(3000);
    expect(scoreFault({ fault: 'f', sent, clients: [c], rows: rows(['p:0', 'p:1', 'p:2']), faultAt: 2000, lateMs: 5000 }).recoveryMs).toBe(1500);
  });
});

describe('scoreTable', () => {
  it('renders one Markdown row per fault', () => {
    const s = scoreFault({ fault: 'nginx reload', sent: [msg(0)], clients: [client('a', { 'p:0': { at: 1020 } })], rows: rows(['p:0']), faultAt: 0 });
    const table = scoreTable([{ ...s, reconnected: '1/1', cutRequests: 0 }]).split('\n');
    expect(table).toHaveLength(3);
    expect(table[2]).toBe('| nginx reload | 1 | 1 | 0 | 0 | 0 | 0 | 1/1 | 0 | 0.0 s |');
  });
});
