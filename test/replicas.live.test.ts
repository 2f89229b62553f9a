import { appendFileSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_DIALOGS, signAdminToken } from '../examples/backend/src/demo.js';
import { REPO_DIR } from '../infra/operate/stack.js';
import { isReplyxError } from '../infra/errors.js';
import { gatewaySpecs } from '../infra/targets/local/gateway-restart.js';
import type { LocalServiceName, ProcessSpec } from '../infra/targets/local/plan.js';
import { isPortOpen, waitUntil } from '../infra/targets/local/ports.js';
import { LEFTOVER_KINDS, leftoverPidFile, readPid } from '../infra/targets/local/supervisor.js';
import { nginxLogFiles, renderNginxConfig } from '../infra/render/nginx.js';
import { runOperatorScript } from './live-clients.js';
import { openSocket, postMessage, type TestSocket } from './e2e/clients.js';
import { expectNothingLost } from './drills/drill.js';
import { startReliabilityRun, type FaultResult, type ReliabilityRun } from './reliability/suite.js';

// Issue 17's "done when" for the local target: two gateway replicas behind nginx share one Redis
// broker. Clients on different replicas of one dialog each get every event once; a client that
// resumes on the other replica with since= gets exactly what it missed; `restart gateway` replaces
// the replicas one at a time under 100 msg/s with nothing lost, nothing twice, and no handshake
// answered 502.

const RESULTS_DIR = path.join(REPO_DIR, 'test-results');
const progress = (line: string) => appendFileSync(path.join(RESULTS_DIR, 'replicas.log'), `${new Date().toISOString()} ${line}\n`);
const DIALOG = DEMO_DIALOGS[0]!.id;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let run: ReliabilityRun;
let adminToken: string;
const sockets: TestSocket[] = [];

const replicaUrl = (port: number, since?: string) => `ws://127.0.0.1:${port}/ws/dialogs/${DIALOG}${since ? `?since=${since}` : ''}`;
const publish = async (text: string): Promise<string> => {
  const res = await postMessage(`http://127.0.0.1:${run.stack.handle.ports.nginx}/api/dialogs/${DIALOG}/messages`, text, adminToken);
  expect(res.status, JSON.stringify(res.body)).toBeLessThan(300);
  return res.eventId!;
};
const open = async (url: string) => {
  const s = await openSocket(url, { token: adminToken });
  sockets.push(s);
  expect(s.frames[0]?.type, `no connected frame from ${url}`).toBe('connected');
  return s;
};
/** `stack status`, `check` and `health` see every gateway process where it runs now, and pass. */
const operatorsAgree = async (gateways: readonly string[]) => {
  const flags = run.stack.flags;
  const status = await runOperatorScript('stack.ts', ['status', '--json', ...flags]);
  expect(status.code, status.stdout + status.stderr).toBe(0);
  const rows = JSON.parse(status.stdout) as { service: string; port: number; healthy: boolean }[];
  const ports = gatewaySpecs(run.stack.handle.plan).map((g) => g.port);
  expect(rows.filter((r) => r.service.startsWith('gateway')).map((r) => [r.service, r.port, r.healthy])).toEqual(gateways.map((g, i) => [g, ports[i], true]));
  const check = await runOperatorScript('check-architecture.ts', flags);
  expect(check.code, check.stdout + check.stderr).toBe(0);
  const health = await runOperatorScript('verify-health.ts', flags);
  expect(health.code, health.stdout + health.stderr).toBe(0);
  for (const g of gateways) expect(health.stdout).toContain(`${g} /health`);
};
const count = (s: TestSocket, id: string) => s.events().filter((f) => f.id === id).length;

/**
 * Runs `restart SVC` while a listener takes the gateway process's port the moment its old process
 * lets go of it, so the new process cannot bind it; resolves with what the restart threw.
 */
async function restartWithPortTaken(gateway: ProcessSpec, service: LocalServiceName): Promise<{ failure: unknown; release: () => Promise<void> }> {
  // Probes of the port (is it free yet?) connect to it: end them, so close() does not wait for them.
  const squatter = net.createServer((socket) => socket.destroy());
  const squat = waitUntil(async () => (await readPid(leftoverPidFile(gateway, 'handed-over'))) !== undefined, 30_000, 2).then(
    (handedOver) => handedOver && waitUntil(() => new Promise<boolean>((resolve) => squatter.once('error', () => resolve(false)).listen(gateway.port, '127.0.0.1', () => resolve(true))), 5000, 2),
  );
  const failure = await run.stack.handle.restart(service).then(() => undefined, (err: unknown) => err);
  progress(`  the restart of ${service} with ${gateway.name}'s port taken ended: ${String(failure)}`);
  expect(await squat, `took ${gateway.name}'s port before its new process`).toBe(true);
  return { failure, release: () => new Promise<void>((resolve) => squatter.close(() => resolve())) };
}

/** Nothing lost or repeated (the drills' assertion), at least 300 messages in the window, and no handshake refused. */
function expectZeroDowntime(r: FaultResult): void {
  expectNothingLost(r);
  expect(r.messages).toBeGreaterThanOrEqual(300);
  expect(r.refusedHandshakes, r.examples.join('\n')).toBe(0);
}

/** A stack with `replicas` gateways (2 s drain window, 2 backend workers) and its traffic at 100 msg/s. */
function startReplicaRun(replicas: number): Promise<ReliabilityRun> {
  return startReliabilityRun({
    messagesPerFault: 300,
    ratePerS: 100,
    adminsPerDialog: 2,
    log: progress,
    patch: (doc) => {
      doc.setIn(['config', 'replyx:monitoring', 'enabled'], false);
      doc.setIn(['config', 'replyx:gateway', 'replicas'], replicas);
      doc.setIn(['config', 'replyx:gateway', 'drainWindowMs'], 2000);
      // Two workers start well within the start timeout on a loaded machine.
      doc.setIn(['config', 'replyx:backend', 'workers'], 2);
    },
  });
}

describe('gateway.replicas: 2 on the local stack, through nginx', () => {
  beforeAll(async () => {
    await mkdir(RESULTS_DIR, { recursive: true });
    run = await startReplicaRun(2);
    adminToken = await signAdminToken(run.stack.handle.secrets.jwtSecret, 1, 3600);
  }, 240_000);

  afterAll(async () => {
    for (const s of sockets) s.ws.terminate();
    await run?.stop();
  }, 120_000);

  it('runs two gateway processes on consecutive ports, both in the nginx upstream', async () => {
    const gateways = gatewaySpecs(run.stack.handle.plan);
    expect(gateways.map((g) => g.name)).toEqual(['gateway-1', 'gateway-2']);
    const [a, b] = gateways.map((g) => g.port);
    expect(b).toBe(a! + 1);
    const instances = await Promise.all(gateways.map(async (g) => ((await (await fetch(`http://127.0.0.1:${g.port}/health`)).json()) as { instance?: string }).instance));
    expect(new Set(instances).size).toBe(2);
    const pids = await Promise.all(gateways.map((g) => readPid(g.pidFile)));
    expect(new Set(pids).size).toBe(2);
  });

  it('delivers every event once to clients of the same dialog on different replicas', async () => {
    const [g1, g2] = gatewaySpecs(run.stack.handle.plan);
    const on1 = await open(replicaUrl(g1!.port));
    const on2 = await open(replicaUrl(g2!.port));
    const viaNginx = await open(`ws://127.0.0.1:${run.stack.handle.ports.nginx}/ws/dialogs/${DIALOG}`);
    expect(on1.frames[0]!.instance).not.toEqual(on2.frames[0]!.instance);
    const ids = [await publish('cross-replica 1'), await publish('cross-replica 2'), await publish('cross-replica 3')];
    const all = [on1, on2, viaNginx];
    expect(await waitUntil(async () => all.every((s) => ids.every((id) => count(s, id) > 0)), 10_000, 20)).toBe(true);
    // Late duplicates would arrive right after the first copy.
    await sleep(500);
    for (const s of all) expect(ids.map((id) => count(s, id))).toEqual([1, 1, 1]);
  });

  it('resumes on the other replica with since= and gets exactly what it missed', async () => {
    const [g1, g2] = gatewaySpecs(run.stack.handle.plan);
    const first = await open(replicaUrl(g1!.port));
    const seen = await publish('resume: seen');
    expect(await waitUntil(async () => count(first, seen) === 1, 10_000, 20)).toBe(true);
    first.ws.close();
    await first.closed;
    // Other traffic (the run's publisher) goes to other dialogs too; only this dialog's events count.
    const missed = [await publish('resume: missed 1'), await publish('resume: missed 2'), await publish('resume: missed 3')];
    const resumed = await open(replicaUrl(g2!.port, seen));
    const mine = () => resumed.events().map((f) => f.id as string).filter((id) => missed.includes(id) || id === seen);
    expect(await waitUntil(async () => missed.every((id) => mine().includes(id)), 10_000, 20)).toBe(true);
    await sleep(500);
    expect(mine()).toEqual(missed);
  });

  it('restart gateway replaces the replicas one at a time under 100 msg/s, moving each client once: 0 lost, 0 duplicates, 0 handshakes answered 502', async () => {
    const gateways = gatewaySpecs(run.stack.handle.plan);
    const before = await Promise.all(gateways.map((g) => readPid(g.pidFile)));
    const r = await run.window('rolling restart', () => run.stack.handle.restart('gateway'));
    progress(`rolling restart: ${JSON.stringify({ ...r, examples: undefined })}`);
    const after = await Promise.all(gateways.map((g) => readPid(g.pidFile)));
    expect(after.every((pid, i) => pid !== undefined && pid !== before[i])).toBe(true);
    expectZeroDowntime(r);
    // The clients of each replica were moved by its drain (4200), not cut, and each once: straight
    // to that replica's new process, not to a replica replaced after it.
    expect(r.closeCodes['4200'] ?? 0).toBe(run.clients.length);
    expect(r.watchdogRestarts).toEqual({});
    await operatorsAgree(['gateway-1', 'gateway-2']);
  }, 240_000);

  it('a replica whose new process cannot start stays out of the upstream while the other takes its clients (RPX_GATEWAY_RESTART_FAILED); restarting it again rejoins it: 0 lost, 0 duplicates, 0 handshakes answered 502', async () => {
    const h = run.stack.handle;
    const g2 = gatewaySpecs(h.plan)[1]!;
    let failure: unknown;
    const r = await run.window('rolling restart of gateway-2 that fails, then again', async () => {
      const squatted = await restartWithPortTaken(g2, 'gateway-2');
      failure = squatted.failure;
      expect(await readFile(h.plan.nginxConfigFile, 'utf8')).toMatch(new RegExp(`127\\.0\\.0\\.1:${g2.port}[^;]* down;`));
      await squatted.release();
      await h.restart('gateway-2');
    });
    progress(`failed rolling restart of gateway-2, then again: ${JSON.stringify({ ...r, examples: undefined })}`);
    expect(isReplyxError(failure) && failure.code).toBe('RPX_GATEWAY_RESTART_FAILED');
    expectZeroDowntime(r);
    expect(await readPid(leftoverPidFile(g2, 'handed-over'))).toBeUndefined();
    expect(await readFile(h.plan.nginxConfigFile, 'utf8')).toBe(renderNginxConfig(h.plan.topology, 'local', h.plan.nginxRender));
    await operatorsAgree(['gateway-1', 'gateway-2']);
  }, 240_000);
});

describe('gateway.replicas: 1, blue/green restart', () => {
  beforeAll(async () => {
    run = await startReplicaRun(1);
  }, 240_000);

  afterAll(async () => {
    await run?.stop();
  }, 120_000);

  it('restart gateway moves each client once, from the old process to the new one on its own port (a stand-in takes handshakes meanwhile): 0 lost, 0 duplicates, 0 handshakes answered 502', async () => {
    const h = run.stack.handle;
    const [gateway] = gatewaySpecs(h.plan);
    const oldPid = await readPid(gateway!.pidFile);
    const r = await run.window('blue/green restart', () => h.restart('gateway'));
    progress(`blue/green restart: ${JSON.stringify({ ...r, examples: undefined })}`);
    expectZeroDowntime(r);
    // The old process drains only once the new one serves: each client is moved once (one 4200), not twice.
    expect(r.closeCodes['4200'] ?? 0).toBe(run.clients.length);
    expect(r.watchdogRestarts).toEqual({});
    // A new process on the gateway's own port; the stand-in is gone.
    const newPid = await readPid(gateway!.pidFile);
    expect(newPid).not.toBe(oldPid);
    expect(((await (await fetch(`http://127.0.0.1:${gateway!.port}/health`)).json()) as { status?: string }).status).toBe('ok');
    for (const kind of LEFTOVER_KINDS) expect(await readPid(leftoverPidFile(gateway!, kind))).toBeUndefined();
    expect(await waitUntil(async () => !(await isPortOpen(gateway!.port + 1)), 5000, 50)).toBe(true);
    expect(await readFile(h.plan.nginxConfigFile, 'utf8')).toBe(renderNginxConfig(h.plan.topology, 'local', h.plan.nginxRender));
    // The start and the restart's reloads asked for no more open files than nginx could get.
    expect(await readFile(nginxLogFiles(h.plan.nginxPrefixDir).error, 'utf8')).not.toMatch(/setrlimit/);
    await operatorsAgree(['gateway']);
  }, 240_000);

  it('a new process that cannot start leaves the stand-in serving (RPX_GATEWAY_RESTART_FAILED); the next restart moves its clients on: 0 lost, 0 duplicates, 0 handshakes answered 502', async () => {
    const h = run.stack.handle;
    const [gateway] = gatewaySpecs(h.plan);
    let failure: unknown;
    const r = await run.window('blue/green restart that fails, then again', async () => {
      const squatted = await restartWithPortTaken(gateway!, 'gateway');
      failure = squatted.failure;
      // The stand-in alone serves /ws/ meanwhile.
      expect(await readPid(leftoverPidFile(gateway!, 'stand-in'))).toBeDefined();
      await squatted.release();
      progress('  restart again, port free');
      await h.restart('gateway');
    });
    progress(`failed blue/green restart, then again: ${JSON.stringify({ ...r, examples: undefined })}`);
    expect(isReplyxError(failure) && failure.code).toBe('RPX_GATEWAY_RESTART_FAILED');
    expectZeroDowntime(r);
    for (const kind of LEFTOVER_KINDS) expect(await readPid(leftoverPidFile(gateway!, kind))).toBeUndefined();
    expect(await readFile(h.plan.nginxConfigFile, 'utf8')).toBe(renderNginxConfig(h.plan.topology, 'local', h.plan.nginxRender));
    await operatorsAgree(['gateway']);
  }, 240_000);
});
