import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { validateTopology, type Target } from '../topology/index.js';
import { RULES, ruleById, rulesOfKind, rulesReading, validationSeverity } from './catalog.js';
import { LIVE_RULES } from './live-rules.js';
import { STATIC_RULES } from './static-rules.js';
import { TOPOLOGY_FINDINGS } from './topology-rules.js';

const doc = (name: string) => readFileSync(new URL(`../../docs/${name}`, import.meta.url), 'utf8');

/** The rows of docs/operations.md's rules table, by rule id. */
function operationsRules(): Map<string, { kind: string; reads: string; against: string; blocks: string; guards: string; fix: string }> {
  const rows = new Map<string, { kind: string; reads: string; against: string; blocks: string; guards: string; fix: string }>();
  for (const line of doc('operations.md').split('\n')) {
    const m = /^\| `([a-z0-9-]+)` \| (.*) \|$/.exec(line);
    if (!m) continue;
    const [kind = '', reads = '', against = '', blocks = '', guards = '', fix = ''] = m[2]!.split(' | ');
    rows.set(m[1]!, { kind, reads, against, blocks, guards, fix });
  }
  return rows;
}

describe('rule table', () => {
  it('has one kebab-case id per rule', () => {
    const ids = RULES.map((r) => r.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of ids) expect(id).toMatch(/^[a-z0-9]+(?:-[a-z0-9]+)*$/);
  });

  it('says consistently what each rule reads, where it runs and what it is judged against', () => {
    for (const r of RULES) {
      expect(r.kind === 'live', r.id).toBe(r.reads === 'live');
      if (r.kind === 'topology') expect(r.reads, r.id).toBe('topology');
      const subject = { topology: 'stack-file', 'nginx-config': 'rendered', live: 'running' }[r.reads];
      expect(r.against, r.id).toContain(subject);
      expect(r.title.length, r.id).toBeGreaterThan(5);
    }
  });

  it('is what the check, validation and the policy pack select from, by field', () => {
    expect(STATIC_RULES.map((r) => r.id)).toEqual(rulesOfKind('static').map((r) => r.id));
    expect(LIVE_RULES.map((r) => r.id)).toEqual(rulesOfKind('live').map((r) => r.id));
    // Every rule that reads the topology has one predicate, shared by validation and the check.
    expect(Object.keys(TOPOLOGY_FINDINGS).sort()).toEqual(rulesReading('topology').map((r) => r.id).sort());
    expect(validationSeverity(ruleById('desync-risk'))).toBe('warning');
    expect(validationSeverity(ruleById('heartbeat-vs-timeouts'))).toBe('error');
  });

  it.each(['local', 'docker', 'aws'] as const)('gives every rule a fix for a %s stack, naming the gateway service "gateway"', (target: Target) => {
    const topology = validateTopology({ target, wsRoute: 'backend', backend: { workers: 1 } }).topology;
    for (const r of RULES) {
      for (const fix of [r.fix({ topology, stack: 'ops' }), r.probeFix?.({ topology, stack: 'ops' })]) {
        if (fix === undefined) continue;
        expect(fix.length, r.id).toBeGreaterThan(10);
        expect(fix, r.id).not.toMatch(/ws-gateway/);
        // A command in a fix names the stack it was printed for, so it acts on that one as printed.
        for (const command of fix.match(/(?:npm run \S+ --|pulumi up)[^()]*/g) ?? []) expect(command, r.id).toMatch(/--stack ops/);
      }
    }
    expect(ruleById('ws-handshake').fix({ topology, stack: 'ops' })).toBe(target === 'local' ? 'npm run stack -- apply --stack ops' : 'pulumi up --stack ops');
  });

  it('is documented: every rule in docs/operations.md with its kind, reads, reach and title; no stale rows', () => {
    const rows = operationsRules();
    expect([...rows.keys()].sort()).toEqual(RULES.map((r) => r.id).sort());
    for (const r of RULES) {
      const row = rows.get(r.id)!;
      expect({ kind: row.kind, reads: row.reads, against: row.against, blocks: row.blocks, guards: row.guards }, r.id).toEqual({
        kind: r.kind,
        reads: r.reads,
        against: r.against.join(', '),
        blocks: r.blocksDeploy ? 'yes' : 'no',
        guards: r.title,
      });
      expect(row.fix.length, `${r.id}: fix`).toBeGreaterThan(10);
    }
  });
});
