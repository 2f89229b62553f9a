import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { collectLiveState } from '../../operate/live-state.js';
import { runRollback } from '../../operate/rollback/run.js';
import { REPO_DIR, resolveContext, type StackContext } from '../../operate/stack.js';
import type { CommandResult, CommandRunner } from '../../processes/run.js';
import { readChecksumFromConfig, renderNginxConfig } from '../../render/nginx.js';
import { topologyChecksum, topologyFromStackText } from '../../topology/index.js';

// The docker target with the Docker daemon and Pulumi mocked: a recording runner answers the
// argv arrays; files are real (a temp project with the bind-mounted nginx directory).

let dir: string;
let calls: string[][];
let stackText: string;

function runner(fail: (argv: readonly string[]) => CommandResult | undefined = () => undefined): CommandRunner {
  return async (argv) => {
    calls.push([...argv]);
    return fail(argv) ?? { exitCode: 0, stdout: '', stderr: '' };
  };
}

async function context(): Promise<StackContext> {
  return resolveContext({ stack: 'dev', target: 'docker', 'project-dir': dir });
}

beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'replyx-docker-rb-'));
  calls = [];
  stackText = `${await readFile(path.join(REPO_DIR, 'Pulumi.dev.yaml'), 'utf8')}  replyx-docker:stateDir: nginx-state\n`;
  await writeFile(path.join(dir, 'Pulumi.dev.yaml'), stackText);
  await mkdir(path.join(dir, 'nginx-state'), { recursive: true });
  const t = topologyFromStackText(stackText, 'Pulumi.dev.yaml').topology;
  await writeFile(path.join(dir, 'nginx-state', 'nginx.conf'), renderNginxConfig(t, 'docker'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('docker rollback (daemon mocked)', () => {
  it('--ws-to backend: docker exec nginx -t on the new file, rename, nginx -s reload, restart the gateway to drain, persist', async () => {
    const ctx = await context();
    const lines: string[] = [];
    const verify = async () => 'ok (mocked)';
    const report = await runRollback(ctx, { wsRoute: 'backend' }, { print: (l) => lines.push(l), run: runner(), dockerVerify: verify, hasPulumi: false });
    expect(calls).toEqual([
      ['docker', 'exec', 'replyx-nginx', 'nginx', '-t', '-q', '-c', '/etc/nginx/replyx/nginx.conf.next'],
      ['docker', 'exec', 'replyx-nginx', 'nginx', '-s', 'reload'],
      ['docker', 'restart', '--time', '15', 'replyx-ws-gateway'],
    ]);
    expect(report.steps.map((s) => s.name)).toEqual(['record', 'render', 'validate', 'swap', 'reload', 'drain', 'verify', 'persist']);
    const conf = await readFile(path.join(dir, 'nginx-state', 'nginx.conf'), 'utf8');
    expect(conf).toMatch(/# replyx-ws-route: backend/);
    const file = await readFile(path.join(dir, 'Pulumi.dev.yaml'), 'utf8');
    expect(file).toMatch(/replyx:wsRoute: backend/);
    expect(readChecksumFromConfig(conf)).toBe(topologyChecksum(topologyFromStackText(file, 'x').topology));
    expect(lines.some((l) => /^ {2}drain .*docker restart/.test(l))).toBe(true);
  });

  it('--backend-workers 1: sets the config and lets pulumi up recreate the backend with the new env', async () => {
    const ctx = await context();
    await runRollback(ctx, { backendWorkers: 1 }, { print: () => undefined, run: runner(), dockerVerify: async () => 'ok', hasPulumi: true });
    expect(calls.slice(2)).toEqual([
      ['pulumi', '--cwd', dir, 'config', 'set', '--stack', 'dev', '--path', 'replyx:backend.workers', '--', '1'],
      ['pulumi', '--cwd', dir, 'up', '--stack', 'dev', '--yes', '--non-interactive'],
    ]);
  });

  it('nginx -t failure: nothing swapped, nothing reloaded, stack file unchanged', async () => {
    const ctx = await context();
    const before = await readFile(path.join(dir, 'nginx-state', 'nginx.conf'), 'utf8');
    const err = await runRollback(ctx, { wsRoute: 'backend' }, { print: () => undefined, run: runner((a) => (a.includes('-t') ? { exitCode: 1, stdout: '', stderr: 'nginx: [emerg] unknown directive' } : undefined)), dockerVerify: async () => 'ok', hasPulumi: false }).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/unknown directive/);
    expect(calls).toHaveLength(1);
    expect(await readFile(path.join(dir, 'nginx-state', 'nginx.conf'), 'utf8')).toBe(before);
    expect(await readFile(path.join(dir, 'Pulumi.dev.yaml'), 'utf8')).toBe(stackText);
  });

  it('verification failure: previous config put back and reloaded, stack file unchanged', async () => {
    const ctx = await context();
    const before = await readFile(path.join(dir, 'nginx-state', 'nginx.conf'), 'utf8');
    const err = await runRollback(ctx, { wsRoute: 'backend' }, {
      print: () => undefined,
      run: runner(),
      dockerVerify: async () => {
        throw new Error('/ws/ not answered');
      },
      hasPulumi: false,
    }).catch((e: unknown) => e);
    expect((err as { code?: string }).code).toBe('RPX_ROLLBACK_VERIFY_FAILED');
    expect(calls.at(-1)).toEqual(['docker', 'exec', 'replyx-nginx', 'nginx', '-s', 'reload']);
    expect(await readFile(path.join(dir, 'nginx-state', 'nginx.conf'), 'utf8')).toBe(before);
    expect(await readFile(path.join(dir, 'Pulumi.dev.yaml'), 'utf8')).toBe(stackText);
  });

  it('undo restores the stack file byte for byte', async () => {
    const ctx = await context();
    await runRollback(ctx, { wsRoute: 'backend' }, { print: () => undefined, run: runner(), dockerVerify: async () => 'ok', hasPulumi: false });
    await runRollback(await context(), 'undo', { print: () => undefined, run: runner(), dockerVerify: async () => 'ok', hasPulumi: false });
    expect(await readFile(path.join(dir, 'Pulumi.dev.yaml'), 'utf8')).toBe(stackText);
    expect(calls.filter((c) => c[1] === 'restart').map((c) => c.at(-1))).toEqual(['replyx-ws-gateway', 'replyx-backend']);
  });

  it('live probes of the check go through docker exec / docker logs', async () => {
    const ctx = await context();
    const conf = await readFile(path.join(dir, 'nginx-state', 'nginx.conf'), 'utf8');
    const live = await collectLiveState(ctx, {}, runner((a) => (a[2] === 'replyx-nginx' && a[3] === 'cat' ? { exitCode: 0, stdout: conf, stderr: '' } : a[1] === 'logs' ? { exitCode: 0, stdout: 'x "GET /ws/dialogs/1" 101\n', stderr: '' } : a[2] === 'replyx-redis' ? { exitCode: 0, stdout: 'PONG\n', stderr: '' } : undefined)));
    expect(live.runningConfig).toEqual({ ok: true, value: { text: conf, source: expect.stringMatching(/^replyx-nginx:/) as unknown } });
    expect(readChecksumFromConfig(conf)).toBeDefined();
    expect(live.redis).toEqual({ ok: true, value: true });
    expect(live.postgres).toEqual({ ok: true, value: true });
    expect(live.logs).toEqual({ ok: true, value: [{ file: 'docker logs replyx-nginx', lines: ['x "GET /ws/dialogs/1" 101'] }] });
    expect(calls.map((c) => c.slice(0, 4).join(' '))).toEqual(['docker exec replyx-nginx cat', 'docker exec replyx-redis redis-cli', 'docker exec replyx-postgres pg_isready', 'docker logs --tail 2000']);
  });
});
