import { spawn, execFile, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { cpSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { sharedRedisUrl } from '../../test/services.js';
import { PUBLISH_KEY, SECRETS_ENV, TestClient, adminToken, createAccessDatabase, type AccessDatabase } from './harness.js';

// The real entry point as a process: SIGTERM drains with 4200 spread over the window and exits
// 0; a bad env value stops start-up with one line; the compiled output (Docker's build command)
// starts and serves /health.

const repo = path.resolve(new URL('../..', import.meta.url).pathname);
let db: AccessDatabase;

beforeAll(async () => {
  db = await createAccessDatabase();
});

interface Started {
  child: ChildProcess;
  port: number;
  stdout: string[];
  exited: Promise<number | null>;
}

async function startProcess(args: string[], env: Record<string, string>): Promise<Started> {
  const child = spawn(process.execPath, args, {
    cwd: repo,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', PORT: '0', HOST: '127.0.0.1', DATABASE_URL: db.url, ...SECRETS_ENV, REDIS_URL: sharedRedisUrl(), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const stderr: string[] = [];
  child.stderr!.on('data', (b: Buffer) => stderr.push(b.toString()));
  const stdout: string[] = [];
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const port = await new Promise<number>((resolve, reject) => {
    const rl = readline.createInterface({ input: child.stdout! });
    rl.on('line', (line) => {
      stdout.push(line);
      const m = /ws-gateway listening on [^:]+:(\d+)/.exec(line);
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', (code) => reject(new Error(`gateway exited with ${code} before listening: ${stdout.join('\n')} ${stderr.join('')}`)));
  });
  return { child, port, stdout, exited };
}

const running: ChildProcess[] = [];
afterAll(() => {
  for (const c of running) if (c.exitCode === null) c.kill('SIGKILL');
});

describe('gateway process', () => {
  it('SIGTERM: every connection closes with 4200, spread over DRAIN_WINDOW_MS, then exit 0', async () => {
    const gw = await startProcess(['--import', 'tsx', 'gateway/src/main.ts'], { DRAIN_WINDOW_MS: '1000' });
    running.push(gw.child);
    const token = await adminToken(db.a.userId);
    const clients = Array.from({ length: 20 }, () => new TestClient(`ws://127.0.0.1:${gw.port}/ws/dialogs/${db.a.dialogs[0]}?token=${token}`));
    await Promise.all(clients.map((c) => c.ready()));
    const closedAt: number[] = [];
    for (const c of clients) void c.closed.then(() => closedAt.push(Date.now()));
    gw.child.kill('SIGTERM');
    const codes = await Promise.all(clients.map(async (c) => (await c.closed).code));
    expect(codes).toEqual(Array(20).fill(4200));
    expect(await gw.exited).toBe(0);
    const spread = Math.max(...closedAt) - Math.min(...closedAt);
    console.log(`[drain] 20 connections closed with 4200 over ${spread} ms (window 1000 ms)`);
    // Not all at once: the closes are spread across the window (loosely, to stay robust on a busy CI).
    expect(spread).toBeGreaterThan(300);
    expect(gw.stdout.some((l) => l.includes('draining'))).toBe(true);
    expect(gw.stdout.some((l) => l.includes('gateway stopped'))).toBe(true);
  });

  it('SIGUSR2 frees the port for a successor and keeps the clients; the SIGTERM after drains them with 4200', async () => {
    const gw = await startProcess(['--import', 'tsx', 'gateway/src/main.ts'], { DRAIN_WINDOW_MS: '200' });
    running.push(gw.child);
    const token = await adminToken(db.a.userId);
    const clients = Array.from({ length: 5 }, () => new TestClient(`ws://127.0.0.1:${gw.port}/ws/dialogs/${db.a.dialogs[0]}?token=${token}`));
    await Promise.all(clients.map((c) => c.ready()));
    gw.child.kill('SIGUSR2');
    // A successor binds the same port while the handed-over process still serves its clients.
    const successor = net.createServer();
    await vi.waitFor(() => new Promise<void>((resolve, reject) => successor.once('error', reject).listen(gw.port, '127.0.0.1', () => resolve())), { timeout: 5000, interval: 50 });
    await vi.waitFor(() => expect(gw.stdout.some((l) => l.includes('listener closed for a successor'))).toBe(true), { timeout: 5000 });
    expect(clients.every((c) => c.ws.readyState === c.ws.OPEN)).toBe(true);
    gw.child.kill('SIGTERM');
    expect(await Promise.all(clients.map(async (c) => (await c.closed).code))).toEqual(Array(5).fill(4200));
    expect(await gw.exited).toBe(0);
    await new Promise<void>((resolve) => successor.close(() => resolve()));
  });

  it('a handed-over gateway that gets no SIGTERM drains by itself after HANDOVER_TIMEOUT_MS', async () => {
    const gw = await startProcess(['--import', 'tsx', 'gateway/src/main.ts'], { DRAIN_WINDOW_MS: '0', HANDOVER_TIMEOUT_MS: '1000' });
    running.push(gw.child);
    const token = await adminToken(db.a.userId);
    const client = new TestClient(`ws://127.0.0.1:${gw.port}/ws/dialogs/${db.a.dialogs[0]}?token=${token}`);
    await client.ready();
    const t0 = Date.now();
    gw.child.kill('SIGUSR2');
    expect((await client.closed).code).toBe(4200);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(900);
    expect(await gw.exited).toBe(0);
  });

  it('a bad env value stops start-up with one line naming the variable and the fix', async () => {
    const run = promisify(execFile);
    const err = await run(process.execPath, ['--import', 'tsx', 'gateway/src/main.ts'], {
      cwd: repo,
      env: { PATH: process.env.PATH ?? '', DATABASE_URL: db.url, ...SECRETS_ENV, REDIS_URL: sharedRedisUrl(), MAX_PAYLOAD_BYTES: 'lots' },
    }).catch((e: { code: number; stderr: string; stdout: string }) => e);
    expect('code' in err ? err.code : 0).toBe(1);
    const lines = (err as { stderr: string }).stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^error RPX_GATEWAY_CONFIG: MAX_PAYLOAD_BYTES: must be a whole number .* — correct MAX_PAYLOAD_BYTES or unset it to use the default 65536$/);
  });

  it('the compiled build (tsc -p gateway/tsconfig.build.json) starts and serves /health', { timeout: 180_000 }, async () => {
    // Inside the repo (git-ignored dist/) so the compiled files resolve node_modules as in the image.
    mkdirSync(path.join(repo, 'gateway/dist'), { recursive: true });
    const out = mkdtempSync(path.join(repo, 'gateway/dist/test-build-'));
    try {
      await promisify(execFile)(process.execPath, [path.join(repo, 'node_modules/typescript/bin/tsc'), '-p', 'gateway/tsconfig.build.json', '--outDir', out], { cwd: repo });
      cpSync(path.join(repo, 'gateway/src/broker/replyx.lua'), path.join(out, 'broker/replyx.lua'));
      const gw = await startProcess([path.join(out, 'main.js')], { DRAIN_WINDOW_MS: '0' });
      running.push(gw.child);
      const res = await fetch(`http://127.0.0.1:${gw.port}/health`);
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ status: 'ok', redis: 'up', db: 'up' });
      // The replyx function library is loaded from the compiled tree.
      const pub = await fetch(`http://127.0.0.1:${gw.port}/internal/publish`, {
        method: 'POST',
        headers: { 'x-publish-key': PUBLISH_KEY, 'content-type': 'application/json' },
        body: JSON.stringify({ dialog_id: db.a.dialogs[1], type: 'message:new', data: {} }),
      });
      expect(pub.status).toBe(202);
      gw.child.kill('SIGTERM');
      expect(await gw.exited).toBe(0);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});
