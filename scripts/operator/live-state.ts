import path from 'node:path';
import { readFile } from 'node:fs/promises';
import { demoVisitorKey, signAdminToken } from '../../examples/backend/src/demo.js';
import { readChecksumFromConfig } from '../../infra/render/nginx.js';
import type { LiveState, Probe } from '../../infra/rules/index.js';
import { topologyChecksum } from '../../infra/topology/index.js';
import type { StackContext } from './context.js';
import { httpGet, httpJson, postgresPing, redisPing, tailFile, wsFirstFrame } from './probes.js';
import type { CommandRunner } from './runner.js';

// Observes a running stack for the live rules. Local: files, pids and ports of the state dir.
// Docker: the same questions asked through `docker exec`/`docker logs` (argv arrays).

/** Credentials the probes use; the local stack derives them from its secrets. */
export interface ProbeCredentials {
  readonly adminToken?: string;
  readonly debugToken?: string;
  /** Resumes the probe widget's dialog through POST /api/widget/sessions (else the probe opens a new one). */
  readonly widgetVisitorKey?: string;
}

/** The dialog the handshake and the synthetic probe use (a seed dialog of the demo data). */
export const DEFAULT_PROBE_DIALOG = 123;

/** Credentials for a context: local secrets, else REPLYX_ADMIN_TOKEN / REPLYX_DEBUG_TOKEN / REPLYX_WIDGET_VISITOR_KEY. */
export async function probeCredentials(ctx: StackContext, env: NodeJS.ProcessEnv = process.env): Promise<ProbeCredentials> {
  if (ctx.local) {
    const { secrets } = ctx.local;
    return { adminToken: await signAdminToken(secrets.jwtSecret, 1, 3600), debugToken: secrets.debugToken, widgetVisitorKey: demoVisitorKey(secrets.widgetTokenSecret) };
  }
  return {
    ...(env.REPLYX_ADMIN_TOKEN ? { adminToken: env.REPLYX_ADMIN_TOKEN } : {}),
    ...(env.REPLYX_DEBUG_TOKEN ? { debugToken: env.REPLYX_DEBUG_TOKEN } : {}),
    ...(env.REPLYX_WIDGET_VISITOR_KEY ? { widgetVisitorKey: env.REPLYX_WIDGET_VISITOR_KEY } : {}),
  };
}

const fromRun = async (run: CommandRunner, argv: readonly string[]): Promise<Probe<string>> => {
  try {
    const r = await run(argv);
    return r.exitCode === 0 ? { ok: true, value: r.stdout } : { ok: false, error: `${argv.slice(0, 3).join(' ')}: exit ${r.exitCode} ${(r.stderr || r.stdout).trim().split('\n').pop() ?? ''}` };
  } catch (err) {
    return { ok: false, error: (err as Error).message };
  }
};

/** Collects every live observation for the check. */
export async function collectLiveState(ctx: StackContext, creds: ProbeCredentials, run: CommandRunner, probeDialog = DEFAULT_PROBE_DIALOG): Promise<LiveState> {
  const debugHeaders: Record<string, string> = creds.debugToken ? { 'X-Debug-Token': creds.debugToken } : {};
  const ws: Promise<Probe<unknown>> = creds.adminToken
    ? wsFirstFrame(`${ctx.endpoints.ws}/ws/dialogs/${probeDialog}?token=${encodeURIComponent(creds.adminToken)}`)
    : Promise.resolve({ ok: false, error: 'no admin token: set REPLYX_ADMIN_TOKEN (an operator JWT) to probe /ws/' });
  const common = {
    renderedChecksum: topologyChecksum(ctx.topology),
    wsFirstFrame: await ws,
    gatewayStatus: await httpJson(`${ctx.endpoints.gateway}/api/debug/websocket/status`, debugHeaders),
    backendHealth: await httpJson(`${ctx.endpoints.backend}/health`),
    debugThroughNginx: await httpGet(`${ctx.endpoints.nginx}/api/debug/websocket/status`),
  };
  if (ctx.local) {
    const { plan } = ctx.local;
    let runningChecksum: Probe<string | undefined>;
    try {
      runningChecksum = { ok: true, value: readChecksumFromConfig(await readFile(plan.nginxConfigFile, 'utf8')) };
    } catch (err) {
      runningChecksum = { ok: false, error: (err as Error).message };
    }
    return {
      ...common,
      runningChecksum,
      redis: await redisPing(ctx.endpoints.redisPort),
      postgres: await postgresPing(plan.databaseUrl),
      accessLog: await tailFile(path.join(plan.nginxPrefixDir, 'logs', 'access.log')),
    };
  }
  if (ctx.docker) {
    const c = ctx.docker.containers;
    const t = ctx.topology;
    const config = await fromRun(run, ['docker', 'exec', c.nginx, 'cat', ctx.docker.containerConfigFile]);
    const redis = await fromRun(run, ['docker', 'exec', c.redis, 'redis-cli', '-p', String(t.redis.port), 'ping']);
    const postgres = await fromRun(run, ['docker', 'exec', c.postgres, 'pg_isready', '-h', '127.0.0.1', '-p', String(t.postgres.port), '-U', t.postgres.user, '-d', t.postgres.database]);
    const logs = await fromRun(run, ['docker', 'logs', '--tail', '2000', c.nginx]);
    return {
      ...common,
      runningChecksum: config.ok ? { ok: true, value: readChecksumFromConfig(config.value) } : config,
      redis: redis.ok ? (redis.value.trim() === 'PONG' ? { ok: true, value: true } : { ok: false, error: `PING answered ${redis.value.trim()}` }) : redis,
      postgres: postgres.ok ? { ok: true, value: true } : postgres,
      accessLog: logs.ok ? { ok: true, value: logs.value.split('\n').filter((l) => l.length > 0) } : logs,
    };
  }
  // aws: nginx runs in Fargate behind the ALB; only what the public URL answers is observable here.
  return common;
}
