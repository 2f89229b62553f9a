import { describe, expect, it } from 'vitest';
import { validateTopology, type Target, type Topology, type TopologyInput } from '../topology/index.js';
import { planTaskDefinitions, type TaskRefs } from '../targets/aws/tasks.js';
import { planDockerStack } from '../targets/docker/plan.js';
import { planLocalStack } from '../targets/local/plan.js';
import { renderServiceEnv, resolveServiceEnv, SECRET_SETTING_REFS, SETTING_REFS, settingRefsOf } from './service-env.js';

// The settings of a service are rendered once; each target only resolves the references. These
// tests resolve every target's env and check they agree on everything but where things are
// (ports, hosts, URLs) and what the secrets are.

const topo = (target: Target, input: TopologyInput = {}): Topology => validateTopology({ ...input, target }).topology;
const INPUT: TopologyInput = { backend: { workers: 3 }, gateway: { heartbeatMs: 15_000, drainWindowMs: 1500 }, limits: { maxConnections: 777, historyLength: 42 } };
const secrets = { jwtSecret: 'j'.repeat(43), publishKey: 'p'.repeat(43), debugToken: 'd'.repeat(43), siteTokenSecret: 's'.repeat(43), widgetTokenSecret: 'w'.repeat(43), redisGatewayPassword: 'g'.repeat(43), redisPublisherPassword: 'u'.repeat(43), redisAdminPassword: 'a'.repeat(43), gatewayDatabasePassword: 'q'.repeat(43) };

/**
 * Variables that say where a service is or who it is, not how it behaves; SEED_DEMO, whose
 * default is the target's; NODE_EXTRA_CA_CERTS, the CA of the target's own database (aws: RDS).
 */
const PLACEMENT = new Set(['PORT', 'HOST', 'INSTANCE_ID', 'SEED_DEMO', 'NODE_EXTRA_CA_CERTS']);

/** Each target's resolved env of one service, with `undefined` standing for a value held as a secret. */
function resolvedEnvs(service: 'backend' | 'gateway'): Record<Target, Record<string, string | undefined>> {
  const local = planLocalStack(topo('local', INPUT), { stateDir: '/tmp/s', repoDir: '/repo', secrets, nodePath: '/usr/bin/node' });
  const docker = planDockerStack(topo('docker', INPUT), { projectRoot: '/repo', debugToken: true });
  const t = topo('aws', INPUT);
  const refs: TaskRefs = {
    images: { backend: 'b', gateway: 'g', nginx: 'n' },
    region: 'eu-west-1',
    logGroups: { backend: '/b', gateway: '/g', nginx: '/n' },
    secrets: { databaseUrl: 'arn:db', gatewayDatabaseUrl: 'arn:gwdb', gatewayDatabasePassword: 'arn:gwpw', redisUrl: 'arn:redis', jwtSecret: 'arn:jwt', siteTokenSecret: 'arn:site', widgetTokenSecret: 'arn:widget', publishKey: 'arn:publish', debugToken: 'arn:debug' },
    nginxConfig: '',
  };
  const aws = planTaskDefinitions(t, refs)[service].containerDefinitions[0]!;
  const secretKeys = new Set(settingRefsOf(renderServiceEnv(t, service)).filter((r) => SECRET_SETTING_REFS.has(r.ref)).map((r) => r.env));
  const hideSecrets = (env: Readonly<Record<string, unknown>>) => Object.fromEntries(Object.entries(env).map(([k, v]) => [k, secretKeys.has(k) ? undefined : String(v)]));
  return {
    local: hideSecrets(local.services.find((s) => s.name === service)!.env),
    docker: hideSecrets(docker.containers.find((c) => c.service === service)!.env),
    aws: {
      ...hideSecrets(Object.fromEntries(aws.environment.map((e) => [e.name, e.value]))),
      ...Object.fromEntries(aws.secrets.map((s) => [s.name, undefined])),
    },
  };
}

const withoutPlacement = (env: Record<string, string | undefined>) => Object.fromEntries(Object.entries(env).filter(([k]) => !PLACEMENT.has(k)));

describe('renderServiceEnv: one rendering, three targets', () => {
  it.each(['backend', 'gateway'] as const)('%s gets the same settings on local, docker and aws', (service) => {
    const envs = resolvedEnvs(service);
    expect(withoutPlacement(envs.docker)).toEqual(withoutPlacement(envs.local));
    expect(withoutPlacement(envs.aws)).toEqual(withoutPlacement(envs.local));
    // The values come from the topology, not from each target.
    expect(envs.local).toMatchObject(service === 'backend' ? { BACKEND_WORKERS: '3', UVICORN_WORKERS: '3', HISTORY_LENGTH: '42' } : { HEARTBEAT_MS: '15000', DRAIN_WINDOW_MS: '1500', MAX_CONNECTIONS: '777', UVICORN_WORKERS: '1' });
  });

  it.each(['backend', 'gateway'] as const)('%s listens on its topology port and binds per target', (service) => {
    const envs = resolvedEnvs(service);
    const port = String(topo('local')[service].port);
    expect([envs.local.PORT, envs.docker.PORT, envs.aws.PORT]).toEqual([port, port, port]);
    expect([envs.local.HOST, envs.docker.HOST, envs.aws.HOST]).toEqual(['127.0.0.1', '0.0.0.0', '0.0.0.0']);
  });

  it('seeds demo data on the local target only, unless backend.seedDemo says otherwise; the legacy widget handshake is off unless asked for', () => {
    const envs = resolvedEnvs('backend');
    expect([envs.local.SEED_DEMO, envs.docker.SEED_DEMO, envs.aws.SEED_DEMO]).toEqual(['1', '0', '0']);
    expect(renderServiceEnv(topo('docker', { backend: { seedDemo: true } }), 'backend').env.SEED_DEMO).toBe('1');
    expect(renderServiceEnv(topo('local', { backend: { seedDemo: false } }), 'backend').env.SEED_DEMO).toBe('0');
    for (const service of ['backend', 'gateway'] as const) {
      expect(renderServiceEnv(topo('docker'), service).env.LEGACY_WIDGET_AUTH).toBe('0');
      expect(renderServiceEnv(topo('aws', { gateway: { legacyWidgetAuth: true } }), service).env.LEGACY_WIDGET_AUTH).toBe('1');
    }
  });

  it('names gateway processes where the target can (aws tasks fall back to hostname-pid)', () => {
    const envs = resolvedEnvs('gateway');
    expect(envs.local.INSTANCE_ID).toBe('replyx-ws-gateway-1');
    expect(envs.docker.INSTANCE_ID).toBe('replyx-ws-gateway');
    expect(envs.aws.INSTANCE_ID).toBeUndefined();
    expect('INSTANCE_ID' in envs.aws).toBe(false);
  });

  it('keeps secrets as references in the rendering and leaves optional ones out when a target has none', () => {
    const t = topo('docker');
    for (const service of ['backend', 'gateway', 'nginx', 'redis', 'postgres'] as const) {
      for (const value of Object.values(renderServiceEnv(t, service).env)) {
        if (typeof value !== 'string') expect(SETTING_REFS).toContain(value.ref);
        else expect(value).not.toMatch(/:\/\//);
      }
    }
    const gateway = renderServiceEnv(t, 'gateway');
    expect(resolveServiceEnv(gateway, (ref) => (ref === 'debugToken' ? undefined : 'x')).DEBUG_TOKEN).toBeUndefined();
    expect(Object.keys(planDockerStack(t, { projectRoot: '/repo' }).containers.find((c) => c.service === 'gateway')!.env)).not.toContain('DEBUG_TOKEN');
  });

  it('runs redis with the same server settings locally and in docker', () => {
    const args = renderServiceEnv(topo('local', { redis: { maxmemoryMb: 128 } }), 'redis').args!;
    expect(args).toEqual(['--port', '6380', '--maxmemory', '128mb', '--maxmemory-policy', 'volatile-ttl']);
    const local = planLocalStack(topo('local', { redis: { maxmemoryMb: 128 } }), { stateDir: '/tmp/s', repoDir: '/repo', secrets }).services.find((s) => s.name === 'redis')!;
    const docker = planDockerStack(topo('docker', { redis: { maxmemoryMb: 128 } }), { projectRoot: '/repo' }).containers.find((c) => c.service === 'redis')!;
    expect(local.argv.slice(1, 1 + args.length)).toEqual(args);
    expect(docker.command!.slice(1, 1 + args.length)).toEqual(args);
  });
});
