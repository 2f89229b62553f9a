import { appendFileSync, mkdirSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_DIR } from '../../infra/operate/stack.js';
import { nginxLogFiles } from '../../infra/render/nginx.js';
import { waitUntil } from '../../infra/targets/local/ports.js';
import { pidMatches, readPid, serviceState } from '../../infra/targets/local/supervisor.js';
import { readRestarts, WATCHDOG_ENTRY, watchdogPidFile } from '../../infra/targets/local/watchdog.js';
import { expectNothingLost, startDrill, type Drill } from './drill.js';

// Outage drills (issue 16): a service of a live local stack is killed or hung without telling the
// operator side, which starts from `npm run stack -- status` and follows ws-gateway-down.md,
// redis-outage.md or backend-errors.md literally. Contract-following clients listen and a
// publisher posts through nginx throughout; each drill's window is scored (nothing missing,
// nothing twice) and its time from fault to verified recovery recorded. The drills share one
// stack, in an order where each starts from a healthy one: the previous drill's Verification
// proved it.

const OWNED = ['ws-gateway-down', 'redis-outage', 'backend-errors'] as const;
const RESULTS = path.join(REPO_DIR, 'test-results');
/** Figures the runbooks and docs/operations.md quote beyond the harness's score. */
const figures = (record: Record<string, unknown>) => appendFileSync(path.join(RESULTS, 'outage-drills.jsonl'), `${JSON.stringify({ at: new Date().toISOString(), ...record })}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let drill: Drill;

/** The pid of a service of the drill's stack. */
async function pidOf(service: string): Promise<number> {
  const spec = drill.run.stack.handle.plan.services.find((s) => s.name === service)!;
  const pid = await readPid(spec.pidFile);
  if (pid === undefined) throw new Error(`${service} has no pid file`);
  return pid;
}

/** The fault behind "it stays down": no watchdog runs (like a container without a restart policy). */
async function killWatchdog(): Promise<void> {
  const pid = await readPid(watchdogPidFile(drill.run.stack.stateDir));
  if (pid === undefined || !pidMatches(pid, WATCHDOG_ENTRY)) return;
  process.kill(pid, 'SIGKILL');
  if (!(await waitUntil(async () => !pidMatches(pid, WATCHDOG_ENTRY), 10_000, 50))) throw new Error('the watchdog did not die');
}

/** nginx's access log from `offset`: the `/ws/` lines, parsed. */
async function wsLines(offset: number): Promise<{ time: string; status: number; upstream: string; upstream_status: string }[]> {
  const text = (await readFile(nginxLogFiles(drill.run.stack.handle.plan.nginxPrefixDir).access)).subarray(offset).toString('utf8');
  return text
    .split('\n')
    .filter((l) => l.includes('"kind":"ws"'))
    .map((l) => JSON.parse(l) as { time: string; status: number; upstream: string; upstream_status: string });
}

const accessLogSize = async () => (await stat(nginxLogFiles(drill.run.stack.handle.plan.nginxPrefixDir).access)).size;

/** Seconds between the first and the last 502 nginx answered a handshake with (its log has 1 s resolution). */
function seconds502(lines: readonly { time: string; status: number }[]): number {
  const times = lines.filter((l) => l.status === 502).map((l) => Date.parse(l.time));
  return times.length === 0 ? 0 : (Math.max(...times) - Math.min(...times)) / 1000 + 1;
}

/** (client, message) pairs a client got only by its refetch after `resync`, never as a live event. */
function refetchedOnly(): number {
  return drill.run.clients.reduce((n, c) => n + [...c.refetched].filter((t) => !c.events.has(t)).length, 0);
}

beforeAll(async () => {
  mkdirSync(RESULTS, { recursive: true });
  // Two backend workers start faster than the default four and change nothing these drills test.
  drill = await startDrill({
    patch: (doc) => {
      doc.setIn(['config', 'replyx:monitoring', 'enabled'], false);
      doc.setIn(['config', 'replyx:backend', 'workers'], 2);
    },
  });
}, 300_000);

afterAll(async () => {
  await drill?.stop();
}, 120_000);

describe('outage drills: each runbook, followed literally, recovers the stack with nothing lost', () => {
  it('gateway killed (SIGKILL), the watchdog restarts it: status and the watchdog log say so, nothing to do', async () => {
    const port = drill.run.stack.handle.ports.gateway;
    const r = await drill.incident('gateway killed, watchdog restarts it', async () => {
      const gw = drill.run.stack.handle.plan.services.find((s) => s.name === 'gateway')!;
      const before = (await readRestarts(drill.run.stack.stateDir)).gateway?.restarts ?? 0;
      process.kill(await pidOf('gateway'), 'SIGKILL');
      expect(await waitUntil(async () => ((await readRestarts(drill.run.stack.stateDir)).gateway?.restarts ?? 0) > before && (await serviceState(gw)).healthy, 60_000, 100)).toBe(true);
      const seen = await drill.follow('ws-gateway-down', 'Diagnosis', { tag: 'crashed' });
      expect(seen.text).toMatch(new RegExp(`^gateway\\s+\\d+\\s+${port}\\s+healthy\\s+${before + 1}\\b`, 'm'));
      expect(seen.text).toMatch(/gateway \(pid \d+\) exited unexpectedly/);
      expect(seen.text).toMatch(/gateway restarted: pid \d+/);
      await drill.follow('ws-gateway-down', 'Verification');
    });
    expectNothingLost(r);
    figures({ drill: 'gateway killed, watchdog restarts it', closeCodes: r.closeCodes, reconnects: r.reconnects, recoveryMs: r.recoveryMs });
  }, 600_000);

  it('gateway killed and nothing restarts it: status says crashed, nginx logs 502 from the gateway upstream, npm start brings it back', async () => {
    const port = drill.run.stack.handle.ports.gateway;
    let from = 0;
    const r = await drill.incident('gateway killed, stays down', async () => {
      await killWatchdog();
      from = await accessLogSize();
      process.kill(await pidOf('gateway'), 'SIGKILL');
      // Clients notice at once and retry with backoff: the operator arrives to a few 502s.
      await sleep(3000);
      const seen = await drill.follow('ws-gateway-down', 'Diagnosis', { tag: 'down' });
      expect(seen.text).toMatch(new RegExp(`^gateway\\s+-\\s+${port}\\s+crashed\\b`, 'm'));
      expect(seen.text).toContain('watchdog not running');
      expect(seen.text).toContain('gateway crashed: npm start');
      expect(seen.text).toContain(`"status":502`);
      expect(seen.text).toContain(`"upstream":"127.0.0.1:${port}","upstream_status":"502"`);
      expect(seen.text).toMatch(/services-running\s+running\s+FAIL\s+gateway is not running/);
      await drill.follow('ws-gateway-down', 'Action', { tag: 'down' });
      await drill.follow('ws-gateway-down', 'Verification');
    });
    expectNothingLost(r);
    const lines = await wsLines(from);
    figures({ drill: 'gateway killed, stays down', closeCodes: r.closeCodes, ws502: lines.filter((l) => l.status === 502).length, ws502Seconds: seconds502(lines), recoveryMs: r.recoveryMs });
  }, 600_000);

  it('gateway hung (SIGSTOP): no crash, sockets open but dead; status says unhealthy, the restart recovers it', async () => {
    const port = drill.run.stack.handle.ports.gateway;
    let restartFrom = 0;
    const r = await drill.incident('gateway hung (SIGSTOP)', async () => {
      process.kill(await pidOf('gateway'), 'SIGSTOP');
      // No process died: the watchdog has nothing to do, and the clients notice only by their pings.
      await sleep(3000);
      const seen = await drill.follow('ws-gateway-down', 'Diagnosis', { tag: 'hung' });
      expect(seen.text).toMatch(new RegExp(`^gateway\\s+\\d+\\s+${port}\\s+unhealthy\\b`, 'm'));
      expect(seen.text).toMatch(/gateway unhealthy: runs but does not answer its health probe/);
      expect(seen.text).toContain('gateway not answering within 3 s');
      restartFrom = await accessLogSize();
      await drill.follow('ws-gateway-down', 'Action', { tag: 'hung' });
      await drill.follow('ws-gateway-down', 'Verification');
    });
    expectNothingLost(r);
    const lines = await wsLines(restartFrom);
    figures({ drill: 'gateway hung (SIGSTOP)', closeCodes: r.closeCodes, ws502AfterRestart: lines.filter((l) => l.status === 502).length, ws502SecondsAfterRestart: seconds502(lines), recoveryMs: r.recoveryMs });
  }, 600_000);

  it('Redis down, started again empty: clients get resync and refetch what was posted meanwhile; nothing is lost', async () => {
    const resyncsBefore = drill.run.clients.reduce((n, c) => n + c.resyncs, 0);
    const refetchedBefore = refetchedOnly();
    const r = await drill.incident('Redis down, back empty', async () => {
      await killWatchdog();
      process.kill(await pidOf('redis'), 'SIGKILL');
      await sleep(3000);
      const seen = await drill.follow('redis-outage', 'Diagnosis', { tag: 'down' });
      expect(seen.text).toMatch(/^redis\s+-\s+\d+\s+crashed\b/m);
      expect(seen.text).toMatch(/backend unhealthy: its redis is crashed: recover redis first/);
      expect(seen.text).toMatch(/redis\s+running\s+FAIL\s+Redis: .*ECONNREFUSED/);
      expect(seen.text).toContain('"redis":"down"');
      expect(seen.text).toContain('the outbox relay publishes it when Redis is back');
      await drill.follow('redis-outage', 'Action', { tag: 'down' });
      await drill.follow('redis-outage', 'Verification');
    });
    expectNothingLost(r);
    const resyncs = drill.run.clients.reduce((n, c) => n + c.resyncs, 0) - resyncsBefore;
    // The history is gone: continuity cannot be proven, so every client that resumed was told so.
    expect(resyncs).toBeGreaterThan(0);
    figures({ drill: 'Redis down, back empty', closeCodes: r.closeCodes, resyncs, clients: drill.run.clients.length, refetchedOnly: refetchedOnly() - refetchedBefore, messages: r.messages, recoveryMs: r.recoveryMs });
  }, 600_000);

  it('Postgres down: the backend answers 503, the check names Postgres, npm start brings it back; retried posts are stored once', async () => {
    const r = await drill.incident('Postgres down', async () => {
      await killWatchdog();
      process.kill(await pidOf('postgres'), 'SIGKILL');
      await sleep(3000);
      const seen = await drill.follow('backend-errors', 'Diagnosis', { tag: 'postgres' });
      expect(seen.text).toMatch(/^postgres\s+-\s+\d+\s+crashed\b/m);
      expect(seen.text).toMatch(/backend unhealthy: its postgres is crashed: recover postgres first/);
      expect(seen.text).toMatch(/postgres\s+running\s+FAIL\s+Postgres: .*ECONNREFUSED/);
      expect(seen.text).toMatch(/"db":"error: /);
      expect(seen.text).toContain('"status":503');
      expect(seen.text).toContain('database unavailable');
      await drill.follow('backend-errors', 'Action', { tag: 'down' });
      await drill.follow('backend-errors', 'Verification');
    });
    expectNothingLost(r);
    expect(r.retries).toBeGreaterThan(0);
    figures({ drill: 'Postgres down', closeCodes: r.closeCodes, retries: r.retries, messages: r.messages, recoveryMs: r.recoveryMs });
  }, 600_000);

  it.each(OWNED)('%s: every Action fence was proven by a drill', (runbook) => {
    expect(drill.unfollowedActions(runbook)).toEqual([]);
  });
});
