import { execaSync } from 'execa';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { renderNginxConfig } from '../../infra/render/nginx.js';
import { validateTopology } from '../../infra/topology/index.js';
import { freePort, freePortRange, isPortOpen, waitUntil } from '../../infra/targets/local/ports.js';
import { gatewayReplicaPorts } from '../../infra/topology/service-names.js';
import { findBinary, nginxOpenFileLimit, startNginx } from '../../infra/targets/local/processes.js';
import { logTail, processTree, spawnLogged, type BenchProcess } from '../proc.js';
import { tokenProtocols } from '../../gateway/src/auth/credentials.js';
import { BENCH_TOKEN_TTL_S, type Backing } from './backing.js';
import { renderPushpinConfig, renderPushpinRoutes } from './pushpin-config.js';
import type { Role, RunningSystem, SystemName } from './system.js';

// Starts each system under test as its own OS process(es) on 127.0.0.1 and free ports.

/** Repository root: entry points are resolved from here and processes run here (tsx resolves). */
export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** How systems are started. */
export interface StartContext {
  readonly dir: string;
  readonly backing: Backing;
  /** Extra node flags for our gateway (e.g. `--cpu-prof`, `--cpu-prof-dir=…`). */
  readonly gatewayNodeArgs?: readonly string[];
  /** The gateway's LOG_LEVEL. Default "warn": per-connection info lines are not what we measure. */
  readonly gatewayLogLevel?: string;
  /** The gateway's HEARTBEAT_MS; unset: the gateway's default (what users run). */
  readonly gatewayHeartbeatMs?: number;
  /** Pushpin's log level (3 = debug, to see why it refuses connections). Default 1. */
  readonly pushpinLogLevel?: number;
  /** How long a server may take to become ready. Default 20 s. */
  readonly readyTimeoutMs?: number;
}

const DEFAULT_READY_TIMEOUT_MS = 20_000;

function readyTimeout(ctx: StartContext): number {
  return ctx.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS;
}

function packageVersion(name: string): string {
  try {
    return (JSON.parse(readFileSync(path.join(REPO_ROOT, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

function commandVersion(command: string, args: readonly string[], pattern: RegExp): string {
  // Some tools (nginx -v) print their version on stderr: read both streams.
  const r = execaSync(command, args, { reject: false, stdin: 'ignore', all: true });
  return pattern.exec(String(r.all ?? ''))?.[1] ?? 'unknown';
}

/** nginx's version, or "not installed". */
export function nginxVersion(): string {
  const bin = findBinary('nginx');
  return bin ? commandVersion(bin, ['-v'], /nginx\/(\S+)/) : 'not installed';
}

async function startNodeServer(name: string, entry: string, env: NodeJS.ProcessEnv, dir: string, nodeArgs: readonly string[] = []): Promise<BenchProcess> {
  const logFile = path.join(dir, `${name}.log`);
  return spawnLogged(name, process.execPath, [...nodeArgs, '--import', 'tsx', path.join(REPO_ROOT, entry)], { env: { ...process.env, ...env }, cwd: REPO_ROOT, logFile });
}

async function ready(proc: BenchProcess, probe: () => Promise<boolean>, timeoutMs: number, logFile: string): Promise<void> {
  const ok = await waitUntil(async () => proc.running() && (await probe()), timeoutMs, 100);
  if (ok) return;
  await proc.stop(1000);
  throw new Error(`${proc.name} did not become ready in ${timeoutMs} ms; log ${logFile}:\n${await logTail(logFile)}`);
}

/** Starts a Node peer that listens on `PORT` on a free port and waits until it accepts connections. */
async function startNodePeer(ctx: StartContext, name: string, entry: string, env: NodeJS.ProcessEnv = {}): Promise<{ proc: BenchProcess; port: number }> {
  const port = await freePort();
  const proc = await startNodeServer(name, entry, { ...env, PORT: String(port) }, ctx.dir);
  await ready(proc, () => isPortOpen(port), readyTimeout(ctx), path.join(ctx.dir, `${name}.log`));
  return { proc, port };
}

async function httpOk(url: string): Promise<boolean> {
  const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
  await res.arrayBuffer();
  return res.ok;
}

async function startGateway(ctx: StartContext, label: string, port: number): Promise<BenchProcess> {
  const { backing } = ctx;
  if (!backing.databaseUrl) throw new Error('our gateway needs Postgres: start the backing services with postgres: true');
  const env: NodeJS.ProcessEnv = {
    PORT: String(port),
    HOST: '127.0.0.1',
    BROKER: 'redis',
    REDIS_URL: backing.redisUrl,
    DATABASE_URL: backing.databaseUrl,
    JWT_SECRET: backing.jwtSecret,
    SITE_TOKEN_SECRET: backing.siteTokenSecret,
    WIDGET_TOKEN_SECRET: backing.widgetTokenSecret,
    WIDGET_TOKEN_TTL_S: String(BENCH_TOKEN_TTL_S),
    PUBLISH_KEY: backing.publishKey,
    LOG_LEVEL: ctx.gatewayLogLevel ?? 'warn',
    INSTANCE_ID: `bench-${label}`,
    ...(ctx.gatewayHeartbeatMs !== undefined ? { HEARTBEAT_MS: String(ctx.gatewayHeartbeatMs) } : {}),
    DRAIN_WINDOW_MS: '0',
    // Every client comes from 127.0.0.1: per-IP limits would measure the limiter, not the gateway.
    MAX_CONNECTIONS: '1000000',
    MAX_CONNECTIONS_PER_IP: '1000000',
    HANDSHAKES_PER_IP_PER_SECOND: '100000',
    HISTORY_LENGTH: '100',
    HISTORY_TTL_S: '600',
  };
  const proc = await startNodeServer(label, 'gateway/src/main.ts', env, ctx.dir, ctx.gatewayNodeArgs);
  await ready(proc, () => httpOk(`http://127.0.0.1:${port}/health`), readyTimeout(ctx), path.join(ctx.dir, `${label}.log`));
  return proc;
}

function gatewayTarget(base: string, backing: Backing) {
  // Tokens travel as the replyx.token subprotocol, as the contract asks of clients.
  const admin = tokenProtocols(backing.adminToken);
  return (dialog: number, role: Role) =>
    role === 'admin'
      ? { url: `${base}/ws/dialogs/${dialog}`, dialog, protocols: admin }
      : { url: `${base}/ws/widget/dialogs/${dialog}`, dialog, protocols: tokenProtocols(backing.widgetTokens[dialog - 1]!) };
}

/** What both of our rows share: ws clients that count the `connected` frame, auth, the FCALL publish. */
function oursSystem(ctx: StartContext, listenPort: number): Pick<RunningSystem, 'client' | 'readyOn' | 'authenticates' | 'publish' | 'target'> {
  return {
    client: 'ws',
    readyOn: 'first-message',
    authenticates: true,
    publish: { kind: 'redis-lua', redisUrl: ctx.backing.redisUrl },
    target: gatewayTarget(`ws://127.0.0.1:${listenPort}`, ctx.backing),
  };
}

async function startOurs(ctx: StartContext): Promise<RunningSystem> {
  const port = await freePort();
  const proc = await startGateway(ctx, 'ours', port);
  return {
    name: 'ours',
    ...oursSystem(ctx, port),
    serverPids: async () => [proc.pid],
    versions: { ws: packageVersion('ws'), ioredis: packageVersion('ioredis') },
    stop: () => proc.stop(),
  };
}

/**
 * `replicas` gateway processes (replica i on port + i - 1, as the local target runs them) behind
 * nginx with the config rendered from a topology with `gateway.replicas`, so the upstream and
 * its balancing are the ones users get.
 */
async function startOursBehindNginx(ctx: StartContext, name: 'ours-nginx' | 'ours-2', replicas: number): Promise<RunningSystem> {
  const nginxPort = await freePort();
  const port = replicas > 1 ? await freePortRange(replicas, [nginxPort]) : await freePort();
  const { topology } = validateTopology(
    { name: 'bench', target: 'local', gateway: { port, replicas }, backend: { port: await freePort() }, nginx: { port: nginxPort } },
    'bench topology',
  );
  const gateways: BenchProcess[] = [];
  const stopGateways = () => Promise.all(gateways.map((g) => g.stop()));
  let nginx;
  try {
    for (const [i, replicaPort] of gatewayReplicaPorts(topology.gateway).entries()) gateways.push(await startGateway(ctx, replicas > 1 ? `${name}-gateway-${i + 1}` : `${name}-gateway`, replicaPort));
    const nginxDir = path.join(ctx.dir, name);
    await mkdir(nginxDir, { recursive: true });
    const configFile = path.join(nginxDir, 'nginx.conf');
    await writeFile(configFile, renderNginxConfig(topology, 'local', { openFileLimit: nginxOpenFileLimit() }));
    nginx = await startNginx({ dir: nginxDir, port: nginxPort, configFile, readyTimeoutMs: readyTimeout(ctx) });
  } catch (err) {
    await stopGateways();
    throw err;
  }
  const started = nginx;
  return {
    name,
    ...oursSystem(ctx, nginxPort),
    serverPids: async () => [...gateways.map((g) => g.pid), ...(await processTree(started.pid))],
    proxyPids: () => processTree(started.pid),
    versions: { nginx: nginxVersion() },
    async stop() {
      await started.stop();
      await stopGateways();
    },
  };
}

async function startWsFloor(ctx: StartContext): Promise<RunningSystem> {
  const { proc, port } = await startNodePeer(ctx, 'ws-floor', 'bench/peers/ws-floor.ts');
  return {
    name: 'ws-floor',
    client: 'ws',
    readyOn: 'open',
    authenticates: false,
    publish: { kind: 'ws-floor', url: `ws://127.0.0.1:${port}/publish` },
    target: (dialog) => ({ url: `ws://127.0.0.1:${port}/d/${dialog}`, dialog }),
    serverPids: async () => [proc.pid],
    versions: { ws: packageVersion('ws') },
    stop: () => proc.stop(),
  };
}

async function startSocketIo(ctx: StartContext): Promise<RunningSystem> {
  const { proc, port } = await startNodePeer(ctx, 'socketio', 'bench/peers/socketio-server.ts', { REDIS_URL: ctx.backing.redisUrl });
  return {
    name: 'socketio',
    client: 'socketio',
    readyOn: 'open',
    authenticates: false,
    publish: { kind: 'socketio-redis', redisUrl: ctx.backing.redisUrl },
    target: (dialog) => ({ url: `http://127.0.0.1:${port}/?dialog=${dialog}`, dialog }),
    serverPids: async () => [proc.pid],
    versions: { 'socket.io': packageVersion('socket.io'), '@socket.io/redis-adapter': packageVersion('@socket.io/redis-adapter') },
    stop: () => proc.stop(),
  };
}

/** Whether Pushpin can run here (its Debian package provides `pushpin`, `condure` and `zurl`). */
export function pushpinAvailable(): boolean {
  return ['pushpin', 'condure', 'zurl'].every((bin) => findBinary(bin) !== undefined);
}

/**
 * Installs Debian's pushpin package when missing and we may (root with apt-get); returns
 * whether Pushpin is available afterwards. The smoke run never installs: it skips Pushpin.
 */
export function ensurePushpin(log: (line: string) => void): boolean {
  if (pushpinAvailable()) return true;
  if (process.getuid?.() !== 0 || !existsSync('/usr/bin/apt-get')) {
    log('pushpin is not installed and we are not root: skipping it (install with: sudo apt-get install -y pushpin)');
    return false;
  }
  log('installing pushpin (apt-get install -y pushpin)');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  try {
    execaSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
    execaSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'pushpin'], { stdio: 'inherit', env });
  } catch (err) {
    log(`apt-get could not install pushpin (${(err as Error).message}): skipping it`);
  }
  return pushpinAvailable();
}

async function startPushpin(ctx: StartContext): Promise<RunningSystem> {
  const dir = path.join(ctx.dir, 'pushpin');
  await mkdir(path.join(dir, 'run'), { recursive: true });
  await mkdir(path.join(dir, 'log'), { recursive: true });
  const { proc: origin, port: originPort } = await startNodePeer(ctx, 'pushpin-origin', 'bench/peers/pushpin-origin.ts');
  const [httpPort, publishPort, zmqPushPort, zmqSubPort, zmqCommandPort] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()];
  const configFile = path.join(dir, 'pushpin.conf');
  await writeFile(configFile, renderPushpinConfig({ dir, httpPort, publishPort, zmqPushPort, zmqSubPort, zmqCommandPort, originPort, sigKey: randomBytes(16).toString('hex'), logLevel: ctx.pushpinLogLevel }));
  await writeFile(path.join(dir, 'routes'), renderPushpinRoutes(originPort));
  const logFile = path.join(dir, 'pushpin.log');
  const runner = await spawnLogged('pushpin', findBinary('pushpin') ?? 'pushpin', ['--config', configFile], { logFile, cwd: dir });
  const stopAll = async () => {
    // The runner stops its services on SIGTERM; anything that outlived it is killed by pid.
    const tree = await processTree(runner.pid);
    await runner.stop(5000);
    for (const pid of tree.slice(1)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
    await origin.stop();
  };
  try {
    await ready(runner, async () => (await isPortOpen(httpPort)) && (await isPortOpen(publishPort)), readyTimeout(ctx), logFile);
  } catch (err) {
    await stopAll();
    throw err;
  }
  return {
    name: 'pushpin',
    client: 'ws',
    readyOn: 'open',
    authenticates: false,
    publish: { kind: 'pushpin-http', url: `http://127.0.0.1:${publishPort}/publish/` },
    target: (dialog) => ({ url: `ws://127.0.0.1:${httpPort}/d/${dialog}`, dialog }),
    serverPids: async () => [...(await processTree(runner.pid)), origin.pid],
    versions: { pushpin: commandVersion(findBinary('pushpin') ?? 'pushpin', ['--version'], /(\d+\.\d+\.\d+)/) },
    stop: stopAll,
  };
}

/** Starts one system under test; throws with the server's log tail when it does not come up. */
export async function startSystem(name: SystemName, ctx: StartContext): Promise<RunningSystem> {
  switch (name) {
    case 'ours':
      return startOurs(ctx);
    case 'ours-nginx':
      return startOursBehindNginx(ctx, 'ours-nginx', 1);
    case 'ours-2':
      return startOursBehindNginx(ctx, 'ours-2', 2);
    case 'pushpin':
      return startPushpin(ctx);
    case 'socketio':
      return startSocketIo(ctx);
    case 'ws-floor':
      return startWsFloor(ctx);
  }
}

