import { spawn, spawnSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, symlink } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renderNginxConfig } from '../../render/nginx.js';
import { freePort, isPortOpen, waitUntil } from '../local/ports.js';
import { stopPid } from '../local/processes.js';
import { validateTopology } from '../../topology/index.js';
import { healthCheckCommand, nginxStartScript } from './tasks.js';

// The two shell scripts the task definitions carry, run for real: the container health probe
// against a real HTTP server (with each HTTP client it may find in an image), and nginx's start
// script with the real nginx binary.

function which(bin: string): string | undefined {
  const r = spawnSync('sh', ['-c', 'command -v "$1"', 'which', bin], { encoding: 'utf8' });
  if (r.status !== 0) return undefined;
  if (bin !== 'python3') return r.stdout.trim();
  // python3 may be a version-manager shim (a script needing its manager on PATH): use the interpreter itself.
  const real = spawnSync('python3', ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' });
  return real.status === 0 ? real.stdout.trim() : undefined;
}

function runProbe(port: number, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const [, shell, ...args] = healthCheckCommand(port);
  return new Promise((resolve) => {
    const child = spawn(`/bin/${shell!}`, args, { env, stdio: 'ignore' });
    child.on('close', (code) => resolve(code ?? 1));
  });
}

describe('container health probe', () => {
  let server: http.Server;
  let port: number;
  let status = 200;
  let dir: string;

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      res.writeHead(req.url === '/health' ? status : 404).end('x');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
    dir = await mkdtemp(path.join(os.tmpdir(), 'replyx-probe-'));
  });
  afterAll(async () => {
    await new Promise((r) => server.close(r));
    await rm(dir, { recursive: true, force: true });
  });

  it('passes on 200 from /health', async () => {
    status = 200;
    expect(await runProbe(port)).toBe(0);
  });

  it('fails on 503 from /health', async () => {
    status = 503;
    expect(await runProbe(port)).not.toBe(0);
  });

  it('fails when nothing listens', async () => {
    expect(await runProbe(await freePort())).not.toBe(0);
  });

  // An image may carry only one of these clients: the probe must work with each alone.
  for (const client of ['curl', 'wget', 'python3', 'node']) {
    it(`works in an image that has only ${client}`, async (ctx) => {
      const real = which(client);
      if (real === undefined) ctx.skip();
      const bin = path.join(dir, client);
      await mkdir(bin, { recursive: true });
      await symlink(real!, path.join(bin, client));
      const env = { PATH: bin, HOME: process.env.HOME ?? '/root' };
      status = 200;
      expect(await runProbe(port, env)).toBe(0);
      status = 500;
      expect(await runProbe(port, env)).not.toBe(0);
    });
  }
});

describe('nginx start script', () => {
  let dir: string;
  const hasNginx = which('nginx') !== undefined;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'replyx-nginx-start-'));
    await chmod(dir, 0o755);
    await mkdir(path.join(dir, 'logs'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  function start(config: string, file: string) {
    return spawn('/bin/sh', ['-c', nginxStartScript(file)], { env: { ...process.env, NGINX_CONF: config }, stdio: ['ignore', 'pipe', 'pipe'] });
  }

  it.skipIf(!hasNginx)('writes NGINX_CONF byte for byte, checks it and serves it', async () => {
    const port = await freePort();
    const topology = validateTopology({ target: 'local', nginx: { port } }).topology;
    // The local render with a prefix dir runs on this machine's nginx; the script is the same
    // for the aws render (whose Cloud Map names only resolve inside the VPC).
    const config = renderNginxConfig(topology, 'local', { prefixDir: dir });
    const file = path.join(dir, 'nginx.conf');
    const child = start(config, file);
    try {
      expect(await waitUntil(() => isPortOpen(port), 10_000)).toBe(true);
      expect(await readFile(file, 'utf8')).toBe(config);
      expect(await runProbe(port)).toBe(0);
    } finally {
      await stopPid(child.pid!);
    }
  });

  it('turns the SIGTERM ECS stops a task with into nginx\'s graceful stop: a request in flight still completes', async () => {
    let arrived!: () => void;
    const atBackend = new Promise<void>((resolve) => (arrived = resolve));
    const backend = http.createServer((_req, res) => {
      arrived();
      setTimeout(() => res.end('done'), 1_500);
    });
    await new Promise<void>((resolve) => backend.listen(0, '127.0.0.1', resolve));
    const port = await freePort();
    const topology = validateTopology({ target: 'local', nginx: { port }, backend: { port: (backend.address() as AddressInfo).port } }).topology;
    const child = start(renderNginxConfig(topology, 'local', { prefixDir: dir }), path.join(dir, 'graceful.conf'));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      expect(await waitUntil(() => isPortOpen(port), 10_000)).toBe(true);
      const response = fetch(`http://127.0.0.1:${port}/api/slow`).then(async (r) => ({ status: r.status, body: await r.text() }));
      await atBackend;
      child.kill('SIGTERM');
      // nginx's fast stop (SIGTERM) would cut this request; the graceful one lets it finish.
      expect(await response).toEqual({ status: 200, body: 'done' });
      expect(await exited).toBe(0);
      expect(await isPortOpen(port)).toBe(false);
    } finally {
      await stopPid(child.pid!);
      await new Promise<void>((resolve) => backend.close(() => resolve()));
    }
  });

  it.skipIf(!hasNginx)('exits non-zero without starting nginx when the config is broken', async () => {
    const file = path.join(dir, 'broken.conf');
    const child = start('events {\n', file);
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const code = await new Promise<number>((r) => child.on('close', (c) => r(c ?? 1)));
    expect(code).not.toBe(0);
    expect(stderr).toMatch(/unexpected end of file|emerg/);
  });

  it('accepts only a plain absolute config path', () => {
    expect(() => nginxStartScript('relative.conf')).toThrow();
    expect(() => nginxStartScript('/etc/nginx/$(x).conf')).toThrow();
    expect(nginxStartScript()).toContain('/etc/nginx/nginx.conf');
  });
});
