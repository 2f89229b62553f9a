import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import * as pulumi from '@pulumi/pulumi';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installPulumiMocks, isSecretValue, plain, valueOf, type RecordedResource } from '../test/pulumi-mocks.js';
import { runReplyxProgram, type ReplyxProgramOptions } from './program.js';

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'replyx-program-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

interface Run {
  resources: RecordedResource[];
  outputs?: Record<string, unknown>;
  error?: unknown;
}

/**
 * Runs the program the way infra/index.ts does, under fresh mocks and the given stack config
 * (objects JSON-encoded, as Pulumi passes them), and waits until every registration is done.
 */
async function runProgram(config: Record<string, unknown>, secretKeys: string[] = [], options: ReplyxProgramOptions = {}): Promise<Run> {
  const resources = installPulumiMocks();
  pulumi.runtime.setAllConfig(
    Object.fromEntries(Object.entries(config).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)])),
    secretKeys,
  );
  const run: Run = { resources };
  try {
    run.outputs = await runReplyxProgram(pulumi.runtime.allConfig(), options);
  } catch (err) {
    run.error = err;
  }
  // Drains the registrations still in flight (public API: waits for the RPC queue).
  await pulumi.runtime.disconnect();
  return run;
}

const DOCKER = { 'replyx:target': 'docker', 'replyx-docker:stateDir': '/var/lib/replyx/nginx' };

describe('runReplyxProgram: topology first', () => {
  it('fails on backend.workers 0 before any resource is registered, naming the path', async () => {
    const run = await runProgram({ ...DOCKER, 'replyx:backend': { workers: 0 } });
    expect(pulumi.RunError.isInstance(run.error)).toBe(true);
    expect(String((run.error as Error).message)).toMatch(/RPX_TOPOLOGY_INVALID/);
    expect(String((run.error as Error).message)).toContain('backend.workers: must be >= 1');
    expect(run.resources).toEqual([]);
  });

  it('fails on gateway replicas 3 with the memory broker before any resource, listing every problem', async () => {
    const run = await runProgram({ ...DOCKER, 'replyx:gateway': { replicas: 3, broker: 'memory' }, 'replyx:nginx': { port: 8000 } });
    expect(pulumi.RunError.isInstance(run.error)).toBe(true);
    const message = String((run.error as Error).message);
    expect(message).toMatch(/2 problems/);
    expect(message).toMatch(/gateway\.replicas: 3 replicas need the Redis broker/);
    expect(message).toMatch(/backend\.port: port 8000 is used by nginx and backend/);
    expect(run.resources).toEqual([]);
  });

  it('refuses the local target with a pointer to npm start, creating nothing', async () => {
    const run = await runProgram({ 'replyx:target': 'local' });
    expect(String((run.error as Error).message)).toMatch(/RPX_TARGET_LOCAL_NOT_PULUMI: .*npm start/);
    expect(run.resources).toEqual([]);
  });

  it('gives a coded error when the AWS target module is absent, creating nothing', async () => {
    const missing = pathToFileURL(path.join(tmp, 'aws', 'index.js')).href;
    const run = await runProgram({ 'replyx:target': 'aws' }, [], { awsModule: missing });
    expect(String((run.error as Error).message)).toMatch(/RPX_TARGET_MODULE_MISSING: .*aws.*index\.js/);
    expect(run.resources).toEqual([]);
  });

  it('calls deploy() of the AWS target module with the validated topology and returns its outputs', async () => {
    const file = path.join(tmp, 'aws-ok.mjs');
    await writeFile(file, 'export async function deploy({ topology, warnings }) { return { seen: topology.target + ":" + topology.backend.workers, warnings: warnings.length }; }\n');
    const run = await runProgram({ 'replyx:target': 'aws', 'replyx:backend': { workers: 2 }, 'replyx:aws': { certificateArn: 'arn:aws:acm:eu-west-1:123456789012:certificate/abc' } }, [], { awsModule: pathToFileURL(file).href });
    expect(run.error).toBeUndefined();
    expect(run.outputs).toEqual({ target: 'aws', seen: 'aws:2', warnings: 0 });
  });

  it('rejects a target module without deploy()', async () => {
    const file = path.join(tmp, 'aws-empty.mjs');
    await writeFile(file, 'export const nothing = 1;\n');
    const run = await runProgram({ 'replyx:target': 'aws' }, [], { awsModule: pathToFileURL(file).href });
    expect(String((run.error as Error).message)).toMatch(/RPX_TARGET_MODULE_MISSING: .*does not export deploy/);
  });
});

describe('runReplyxProgram: docker target', () => {
  it('generates the three secrets when the config has none, as secrets, and exports the stack outputs', async () => {
    const run = await runProgram({ ...DOCKER, 'replyx:nginx': { port: 8099 } });
    expect(run.error).toBeUndefined();
    const passwords = run.resources.filter((r) => r.type === 'random:index/randomPassword:RandomPassword');
    expect(passwords.map((r) => r.name).sort()).toEqual([
      'replyx-secrets-gatewayDatabasePassword',
      'replyx-secrets-jwtSecret',
      'replyx-secrets-postgresPassword',
      'replyx-secrets-publishKey',
      'replyx-secrets-redisAdminPassword',
      'replyx-secrets-redisGatewayPassword',
      'replyx-secrets-redisPublisherPassword',
      'replyx-secrets-siteTokenSecret',
      'replyx-secrets-widgetTokenSecret',
    ]);
    for (const p of passwords) expect(p.inputs).toMatchObject({ length: 48, special: false });
    expect(run.resources.filter((r) => r.type === 'docker:index/container:Container')).toHaveLength(5);
    const backend = run.resources.find((r) => r.type === 'docker:index/container:Container' && plain(r.inputs.name) === 'replyx-backend')!;
    expect(isSecretValue(backend.inputs.envs)).toBe(true);
    expect(plain<string[]>(backend.inputs.envs)).toContain('JWT_SECRET=generated-replyx-secrets-jwtSecret');
    const outputs = run.outputs!;
    expect(outputs.target).toBe('docker');
    expect(outputs.generatedSecrets).toEqual(['jwtSecret', 'siteTokenSecret', 'widgetTokenSecret', 'postgresPassword', 'publishKey', 'gatewayDatabasePassword', 'redisGatewayPassword', 'redisPublisherPassword', 'redisAdminPassword']);
    expect(plain<string[]>(backend.inputs.envs)).toContain('REDIS_URL=redis://replyx-publisher:generated-replyx-secrets-redisPublisherPassword@replyx-redis:6380');
    expect(await valueOf(outputs.publicUrl as pulumi.Output<string>)).toBe('http://localhost:8099');
    expect(await valueOf(outputs.wsRoute as pulumi.Output<string>)).toBe('gateway');
    expect(await valueOf(outputs.topologyChecksum as pulumi.Output<string>)).toMatch(/^[0-9a-f]{16}$/);
    expect(await valueOf(outputs.nginxConfigFile as pulumi.Output<string>)).toBe('/var/lib/replyx/nginx/nginx.conf');
    expect((await valueOf(outputs.containerNames as pulumi.Output<Record<string, string[]>>)).gateway).toEqual(['replyx-ws-gateway']);
  });

  it('uses the secrets from `pulumi config --secret` and generates none', async () => {
    const run = await runProgram(
      {
        ...DOCKER,
        'replyx:jwtSecret': 'cfg-jwt',
        'replyx:siteTokenSecret': 'cfg-site',
        'replyx:widgetTokenSecret': 'cfg-widget',
        'replyx:postgresPassword': 'cfg-pg',
        'replyx:publishKey': 'cfg-pub',
        'replyx:debugToken': 'cfg-dbg',
        'replyx:redisGatewayPassword': 'cfg-redis-gateway-0123456789abcdefghij',
        'replyx:redisPublisherPassword': 'cfg-redis-publisher-0123456789abcdefghij',
        'replyx:redisAdminPassword': 'cfg-redis-admin-0123456789abcdefghij',
        'replyx:gatewayDatabasePassword': 'cfg-gateway-db-0123456789abcdefghij',
      },
      ['replyx:jwtSecret', 'replyx:siteTokenSecret', 'replyx:widgetTokenSecret', 'replyx:postgresPassword', 'replyx:publishKey', 'replyx:debugToken', 'replyx:redisGatewayPassword', 'replyx:redisPublisherPassword', 'replyx:redisAdminPassword', 'replyx:gatewayDatabasePassword'],
    );
    expect(run.error).toBeUndefined();
    expect(run.resources.filter((r) => r.type === 'random:index/randomPassword:RandomPassword')).toEqual([]);
    expect(run.outputs!.generatedSecrets).toEqual([]);
    const container = (name: string) => run.resources.find((r) => r.type === 'docker:index/container:Container' && plain(r.inputs.name) === name)!;
    const gatewayEnv = plain<string[]>(container('replyx-ws-gateway').inputs.envs);
    expect(gatewayEnv).toEqual(expect.arrayContaining(['JWT_SECRET=cfg-jwt', 'PUBLISH_KEY=cfg-pub', 'DEBUG_TOKEN=cfg-dbg', 'DATABASE_URL=postgres://replyx_gateway:cfg-gateway-db-0123456789abcdefghij@replyx-postgres:5433/replyx', 'REDIS_URL=redis://replyx-gateway:cfg-redis-gateway-0123456789abcdefghij@replyx-redis:6380']));
    expect(isSecretValue(container('replyx-ws-gateway').inputs.envs)).toBe(true);
    expect(isSecretValue(container('replyx-postgres').inputs.envs)).toBe(true);
  });

  it('never puts a secret value into a stack output', async () => {
    const run = await runProgram({ ...DOCKER, 'replyx:jwtSecret': 'cfg-jwt-unique' }, ['replyx:jwtSecret']);
    const resolved = await Promise.all(Object.values(run.outputs!).map((v) => (pulumi.Output.isInstance(v) ? valueOf(v as pulumi.Output<unknown>) : v)));
    expect(JSON.stringify(resolved)).not.toContain('cfg-jwt-unique');
  });

  it('logs topology warnings and still deploys (wsRoute backend with 4 workers is a desync risk)', async () => {
    const run = await runProgram({ ...DOCKER, 'replyx:wsRoute': 'backend' });
    expect(run.error).toBeUndefined();
    expect(await valueOf(run.outputs!.wsRoute as pulumi.Output<string>)).toBe('backend');
    const file = run.resources.find((r) => r.type === 'pulumi-nodejs:dynamic/replyx:NginxConfigFile')!;
    expect(String(file.inputs.content)).toContain('# replyx-ws-route: backend');
  });
});
