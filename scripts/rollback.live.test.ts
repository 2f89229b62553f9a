import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { demoWidgetToken, signAdminToken } from '../examples/backend/src/demo.js';
import { tokenProtocols } from '../gateway/src/auth/credentials.js';
import { waitUntil } from '../infra/targets/local/ports.js';
import { readHistory, historyFile } from '../infra/operate/rollback/history.js';
import { runRollback } from '../infra/operate/rollback/run.js';
import { resolveContext } from '../infra/operate/stack.js';
import { listener, runOperatorScript, type Listener } from '../test/live-clients.js';
import { startOperatorTestStack, type OperatorTestStack } from '../test/operator-stack.js';
import { isReplyxError } from '../infra/errors.js';

// The operator scripts against a real local stack (Postgres, Redis, backend, gateway, nginx on
// free ports) with live traffic: an admin panel and a widget listening on dialog 123 and a
// publisher posting through the backend API, while /ws/ is rolled to the backend and back.

const DIALOG = 123;
let stack: OperatorTestStack;
let original: string;
let admin: Listener;
let widget: Listener;
let adminToken: string;
let publishing = true;
let publisher: Promise<void>;
const timings: Record<string, { verifiedMs?: number; totalMs: number }> = {};

async function publish(text: string): Promise<number> {
  const res = await fetch(`${stack.handle.urls.public.replace('localhost', '127.0.0.1')}/api/dialogs/${DIALOG}/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${adminToken}` },
    body: JSON.stringify({ text }),
  }).catch(() => undefined);
  return res?.status ?? 0;
}

const flags = () => stack.flags;
const onServer = (server: string) => waitUntil(async () => admin.server() === server && widget.server() === server, 20_000, 50);

async function gatewayConnections(): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${stack.handle.ports.gateway}/api/debug/websocket/status`, { headers: { 'X-Debug-Token': stack.handle.secrets.debugToken } });
  return ((await res.json()) as { connections: { total: number } }).connections.total;
}

/** Publishes `n` messages one by one; resolves with the share both listeners received. */
async function deliveryRate(n: number): Promise<number> {
  const texts = Array.from({ length: n }, (_, i) => `delivery-${Date.now()}-${i}`);
  for (const t of texts) expect(await publish(t)).toBeLessThan(300);
  await waitUntil(async () => texts.every((t) => admin.texts.has(t) && widget.texts.has(t)), 5000, 50);
  const got = texts.filter((t) => admin.texts.has(t)).length + texts.filter((t) => widget.texts.has(t)).length;
  return got / (2 * n);
}

async function rollback(args: string[]) {
  const run = await runOperatorScript('rollback.ts', [...args, ...flags(), '--json']);
  expect(run.code, run.stderr).toBe(0);
  return JSON.parse(run.stdout) as { ok: boolean; totalMs: number; verifiedMs?: number; to: { wsRoute: string; backendWorkers: number } };
}

async function check() {
  const run = await runOperatorScript('check-architecture.ts', [...flags(), '--json']);
  return { code: run.code, report: JSON.parse(run.stdout) as { ok: boolean; results: { id: string; status: string; detail: string }[] } };
}

beforeAll(async () => {
  stack = await startOperatorTestStack();
  original = await readFile(stack.stackFile, 'utf8');
  adminToken = await signAdminToken(stack.handle.secrets.jwtSecret, 1, 3600);
  const ws = `ws://127.0.0.1:${stack.handle.ports.nginx}`;
  admin = listener('admin', () => `${ws}/ws/dialogs/${DIALOG}?token=${adminToken}`);
  // A widget session token for dialog 123, as POST /api/widget/sessions issues it (15 minutes).
  const widgetToken = (await demoWidgetToken(stack.handle.secrets.widgetTokenSecret, `http://localhost:${stack.handle.ports.nginx}`)).token;
  widget = listener('widget', () => `${ws}/ws/widget/dialogs/${DIALOG}`, {}, () => tokenProtocols(widgetToken));
  expect(await onServer('ws-gateway')).toBe(true);
  // Background traffic through every rollback below.
  publisher = (async () => {
    for (let i = 0; publishing; i += 1) {
      await publish(`background-${i}`);
      await new Promise((r) => setTimeout(r, 150));
    }
  })();
}, 240_000);

afterAll(async () => {
  publishing = false;
  await publisher;
  admin?.close();
  widget?.close();
  await stack?.stop();
  console.log(`rollback timings on the local stack: ${JSON.stringify(timings)}`);
}, 120_000);

describe.sequential('operator scripts on a live local stack', () => {
  it('check passes and health delivers to admin and widget', async () => {
    const { code, report } = await check();
    expect(report.results.filter((r) => r.status === 'fail')).toEqual([]);
    expect(code).toBe(0);
    const health = await runOperatorScript('verify-health.ts', [...flags(), '--json']);
    expect(health.code, health.stdout).toBe(0);
    expect(JSON.parse(health.stdout).probe.ok).toBe(true);
    expect(await deliveryRate(10)).toBe(1);
  }, 120_000);

  it('--dry-run prints the plan and changes nothing', async () => {
    const run = await runOperatorScript('rollback.ts', ['--ws-to', 'backend', '--dry-run', ...flags()]);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/drain .*4200/);
    expect(await readFile(stack.stackFile, 'utf8')).toBe(original);
  }, 60_000);

  it('rollback --ws-to backend: /ws/ answered by the backend, no client left on the gateway, check fails with desync risk', async () => {
    const report = await rollback(['--ws-to', 'backend']);
    timings['--ws-to backend'] = { verifiedMs: report.verifiedMs, totalMs: report.totalMs };
    expect(report.to).toEqual({ wsRoute: 'backend', backendWorkers: 4 });
    expect(await onServer('backend')).toBe(true);
    expect(admin.closes).toContain(4200);
    expect(await waitUntil(async () => (await gatewayConnections()) === 0, 10_000)).toBe(true);
    const { code, report: c } = await check();
    expect(code).toBe(1);
    const desync = c.results.find((r) => r.id === 'desync-risk')!;
    expect(desync.status).toBe('fail');
    expect(desync.detail).toMatch(/desync risk.*4 workers/);
    expect(c.results.filter((r) => r.status === 'fail').map((r) => r.id)).toEqual(['desync-risk']);
    expect(await readFile(stack.stackFile, 'utf8')).toMatch(/replyx:wsRoute: backend/);
  }, 180_000);

  it('rollback --backend-workers 1: check passes, deliveries 100%', async () => {
    const report = await rollback(['--backend-workers', '1']);
    timings['--backend-workers 1'] = { verifiedMs: report.verifiedMs, totalMs: report.totalMs };
    expect(await onServer('backend')).toBe(true);
    const { code, report: c } = await check();
    expect(c.results.filter((r) => r.status === 'fail')).toEqual([]);
    expect(code).toBe(0);
    expect(await deliveryRate(20)).toBe(1);
  }, 180_000);

  it('rollback --undo twice: back on the gateway with 4 workers, check passes, stack file as it was', async () => {
    const first = await rollback(['--undo']);
    timings['--undo (workers 1 -> 4)'] = { verifiedMs: first.verifiedMs, totalMs: first.totalMs };
    expect(first.to).toEqual({ wsRoute: 'backend', backendWorkers: 4 });
    const second = await rollback(['--undo']);
    timings['--undo (backend -> gateway)'] = { verifiedMs: second.verifiedMs, totalMs: second.totalMs };
    expect(second.to).toEqual({ wsRoute: 'gateway', backendWorkers: 4 });
    expect(await onServer('ws-gateway')).toBe(true);
    const { code, report: c } = await check();
    expect(c.results.filter((r) => r.status === 'fail')).toEqual([]);
    expect(code).toBe(0);
    expect(await readFile(stack.stackFile, 'utf8')).toBe(original);
    expect(await readHistory(historyFile(stack.stateDir))).toEqual([]);
    expect(await deliveryRate(10)).toBe(1);
    const nothing = await runOperatorScript('rollback.ts', ['--undo', ...flags()]);
    expect(nothing.code).toBe(1);
    expect(nothing.stderr).toMatch(/RPX_ROLLBACK_NOTHING_TO_UNDO/);
  }, 240_000);

  it('a config that nginx -t rejects changes nothing', async () => {
    const ctx = await resolveContext({ stack: 'local', 'project-dir': stack.projectDir, 'state-dir': stack.stateDir });
    const lines: string[] = [];
    const err = await runRollback(ctx, { wsRoute: 'backend' }, { print: (l) => lines.push(l), transformConfig: (t) => t.replace('proxy_buffering off;', 'proxy_buffering sometimes;') }).catch((e: unknown) => e);
    expect(isReplyxError(err) && err.code).toBe('RPX_NGINX_CONFIG_INVALID');
    expect(lines.join('\n')).toMatch(/validate .*FAILED/);
    expect(await readFile(stack.stackFile, 'utf8')).toBe(original);
    expect((await check()).code).toBe(0);
  }, 120_000);

  it('a verification failure restores the previous state and says so', async () => {
    const ctx = await resolveContext({ stack: 'local', 'project-dir': stack.projectDir, 'state-dir': stack.stateDir });
    const lines: string[] = [];
    // Valid for nginx -t, but /ws/ and /api/ point at a port nobody listens on.
    const broken = (t: string) => t.replace(`server 127.0.0.1:${stack.handle.ports.backend};`, 'server 127.0.0.1:9;');
    const err = await runRollback(ctx, { wsRoute: 'backend' }, { print: (l) => lines.push(l), transformConfig: broken }).catch((e: unknown) => e);
    expect(isReplyxError(err) && err.code).toBe('RPX_ROLLBACK_VERIFY_FAILED');
    expect((err as Error).message).toMatch(/rollback failed and was undone/);
    expect(lines.join('\n')).toMatch(/restoring wsRoute=gateway, backend workers=4/);
    expect(await readFile(stack.stackFile, 'utf8')).toBe(original);
    expect(await onServer('ws-gateway')).toBe(true);
    const { code, report } = await check();
    expect(report.results.filter((r) => r.status === 'fail')).toEqual([]);
    expect(code).toBe(0);
    expect(await deliveryRate(5)).toBe(1);
  }, 180_000);

  it('health --watch repeats until the first failure and exits 1 (gateway killed)', async () => {
    const watch = runOperatorScript('verify-health.ts', [...flags(), '--watch', '1', '--skip-probe'], 120_000);
    // Let a few healthy rounds pass, then take the gateway away.
    await new Promise((r) => setTimeout(r, 8000));
    const pid = Number((await readFile(stack.handle.plan.services.find((x) => x.name === 'gateway')!.pidFile, 'utf8')).trim());
    process.kill(pid, 'SIGKILL');
    const run = await watch;
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(/round 1\n/);
    expect(run.stdout).toMatch(/UNHEALTHY: gateway \/health/);
  }, 180_000);
});
