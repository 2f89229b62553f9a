import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { DEFAULTS, GATEWAY_ENV_VARIABLES, GatewayConfigError, loadConfig } from '../src/config.js';
import { CONFIG_BASE as base } from './harness.js';

// The limits that used to be constants (pending events, parsed frame size, shutdown grace, Redis
// and Postgres timeouts, memory-broker dialogs) are options: defaults, overrides, ranges, and
// one documented row each in docs/gateway.md.


const OPTIONS = [
  ['MAX_PENDING_EVENTS', 'maxPendingEvents', 10_000, '50', '0'],
  ['MAX_PARSED_FRAME_BYTES', 'maxParsedFrameBytes', 256, '1024', '14'],
  ['SHUTDOWN_GRACE_MS', 'shutdownGraceMs', 2000, '0', '60001'],
  ['LISTEN_BACKLOG', 'listenBacklog', 4096, '1024', '0'],
  ['REDIS_COMMAND_TIMEOUT_MS', 'redisCommandTimeoutMs', 2000, '500', '99'],
  ['REDIS_START_TIMEOUT_MS', 'redisStartTimeoutMs', 5000, '0', '300001'],
  ['MEMORY_HISTORY_DIALOGS', 'memoryHistoryDialogs', 10_000, '3', '0'],
  ['DATABASE_POOL_SIZE', 'databasePoolSize', 4, '16', '101'],
  ['DATABASE_QUERY_TIMEOUT_MS', 'databaseQueryTimeoutMs', 3000, '10000', '50'],
  ['REAUTH_INTERVAL_MS', 'reauthIntervalMs', 15_000, '1000', '60001'],
  ['ACCESS_LOOKUP_WINDOW_MS', 'accessLookupWindowMs', 4, '0', '101'],
] as const;

describe('limits as options', () => {
  it.each(OPTIONS)('%s (field %s) defaults to %s, takes an override and refuses out of range', (variable, field, def, good, bad) => {
    expect(DEFAULTS[variable]).toBe(def);
    expect(loadConfig(base)[field]).toBe(def);
    expect(loadConfig({ ...base, [variable]: good })[field]).toBe(Number(good));
    let err: unknown;
    try {
      loadConfig({ ...base, [variable]: bad });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(GatewayConfigError);
    expect((err as GatewayConfigError).toLine()).toMatch(new RegExp(`^error RPX_GATEWAY_CONFIG: ${variable}: must be at (least|most) \\d+ \\(got "${bad}"\\) — correct ${variable} or unset it to use the default ${def}$`));
  });
});

describe('docs/gateway.md configuration table', () => {
  const doc = readFileSync(new URL('../../docs/gateway.md', import.meta.url), 'utf8');
  const section = doc.slice(doc.indexOf('\n## Configuration\n'), doc.indexOf('\n## ', doc.indexOf('\n## Configuration\n') + 1));
  const rows = new Map([...section.matchAll(/^\| `([A-Z_]+)` \|([^|]*)\|/gm)].map((m) => [m[1]!, m[2]!.trim()]));

  it('has a row for every variable the gateway reads, and no row for one it does not read', () => {
    expect([...rows.keys()].sort()).toEqual([...GATEWAY_ENV_VARIABLES].sort());
  });

  it('shows each numeric default as config.ts has it', () => {
    const numeric = Object.entries(DEFAULTS).filter(([, v]) => typeof v === 'number');
    expect(numeric.map(([k]) => [k, rows.get(k)?.split(' ')[0]])).toEqual(numeric.map(([k, v]) => [k, String(v)]));
  });
});
