import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { DOCKER_STACK_RESOURCE_COUNTS } from '../test/docker-graph.js';
import { parseStackFile } from './topology/index.js';

// The entrypoint must load under a real `pulumi up`: Pulumi's Node language host starts
// `node <runtime.options.nodeargs> ...` and imports `main`. These tests start Node with exactly
// the arguments from Pulumi.yaml and import the entrypoint through a harness that swaps the
// engine for mocks (test/pulumi/entrypoint.ts).

// Each case starts a Node process that transpiles the program: generous on a loaded machine.
const SPAWN_TIMEOUT_MS = 120_000;

const run = promisify(execFile);
const REPO = path.resolve(import.meta.dirname, '..');
const HARNESS = path.join(REPO, 'test/pulumi/entrypoint.ts');

interface Project {
  name: string;
  main: string;
  runtime: { name: string; options: { typescript: boolean; nodeargs: string } };
}

interface HarnessResult {
  resources: { type: string; name: string; inputs: Record<string, unknown> }[];
  outputs?: Record<string, unknown>;
  error?: string;
  runError?: boolean;
}

async function project(): Promise<Project> {
  return parse(await readFile(path.join(REPO, 'Pulumi.yaml'), 'utf8')) as Project;
}

/** PULUMI_CONFIG as the CLI sets it: every value a string, objects JSON-encoded. */
function pulumiConfigEnv(config: Record<string, unknown>): string {
  return JSON.stringify(Object.fromEntries(Object.entries(config).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)])));
}

async function loadEntrypoint(config: Record<string, unknown>): Promise<{ code: number; result: HarnessResult; stderr: string }> {
  const p = await project();
  // nodeargs is a plain space-separated list here ("--import tsx"), no quoting involved.
  const nodeArgs = p.runtime.options.nodeargs.split(/\s+/).filter(Boolean);
  const env = { ...process.env, PULUMI_CONFIG: pulumiConfigEnv(config), PULUMI_CONFIG_SECRET_KEYS: '[]' };
  let stdout: string;
  let stderr: string;
  let code = 0;
  try {
    ({ stdout, stderr } = await run(process.execPath, [...nodeArgs, HARNESS, p.main], { cwd: REPO, env, maxBuffer: 32 * 1024 * 1024 }));
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    ({ stdout, stderr, code } = e);
  }
  const last = stdout.trim().split('\n').pop() ?? '';
  return { code, result: JSON.parse(last) as HarnessResult, stderr };
}

async function stackConfig(stack: string): Promise<Record<string, unknown>> {
  const file = path.join(REPO, `Pulumi.${stack}.yaml`);
  return parseStackFile(await readFile(file, 'utf8'), file);
}

describe('Pulumi.yaml', () => {
  it('runs infra/index.ts as ESM TypeScript through tsx, with Pulumi’s own TypeScript support off', async () => {
    const p = await project();
    expect(p.name).toBe('replyx');
    expect(p.main).toBe('infra/index.ts');
    expect(p.runtime).toEqual({ name: 'nodejs', options: { typescript: false, nodeargs: '--import tsx' } });
    const pkg = JSON.parse(await readFile(path.join(REPO, 'package.json'), 'utf8')) as { type: string; devDependencies: Record<string, string> };
    // Pulumi imports (not requires) the entrypoint only for "type": "module" packages.
    expect(pkg.type).toBe('module');
    expect(pkg.devDependencies.tsx).toBeDefined();
  });
});

describe('infra/index.ts under the node arguments of Pulumi.yaml', () => {
  it('loads with the dev stack config and registers the whole Docker stack', async () => {
    const { code, result, stderr } = await loadEntrypoint(await stackConfig('dev'));
    expect(result.error, stderr).toBeUndefined();
    expect(code).toBe(0);
    const types = result.resources.map((r) => r.type);
    const count = (type: string) => types.filter((t) => t === type).length;
    expect(count('replyx:index:Secrets')).toBe(1);
    expect(count('random:index/randomPassword:RandomPassword')).toBe(9);
    for (const [type, n] of Object.entries(DOCKER_STACK_RESOURCE_COUNTS)) expect(count(type), type).toBe(n);
    const published = result.resources
      .filter((r) => r.type === 'docker:index/container:Container' && Array.isArray(r.inputs.ports) && r.inputs.ports.length > 0)
      .map((r) => r.inputs.name);
    expect(published).toEqual(['replyx-nginx']);
    expect(result.outputs).toMatchObject({
      target: 'docker',
      publicUrl: 'http://localhost:8080',
      wsRoute: 'gateway',
      networkName: 'replyx-net',
      containerNames: {
        backend: ['replyx-backend'],
        gateway: ['replyx-ws-gateway'],
        nginx: ['replyx-nginx'],
        redis: ['replyx-redis'],
        postgres: ['replyx-postgres'],
      },
      generatedSecrets: ['jwtSecret', 'siteTokenSecret', 'widgetTokenSecret', 'postgresPassword', 'publishKey', 'gatewayDatabasePassword', 'redisGatewayPassword', 'redisPublisherPassword', 'redisAdminPassword'],
      nginxConfigFile: path.join(REPO, '.stack/docker/nginx/nginx.conf'),
    });
    expect(result.outputs!.topologyChecksum).toMatch(/^[0-9a-f]{16}$/);
  }, SPAWN_TIMEOUT_MS);

  it('fails on an invalid topology before registering anything, naming every problem', async () => {
    const { code, result } = await loadEntrypoint({ 'replyx:target': 'docker', 'replyx:backend': { workers: 0 }, 'replyx:gateway': { replicas: 3, broker: 'memory' } });
    expect(code).toBe(1);
    expect(result.runError).toBe(true);
    expect(result.error).toMatch(/RPX_TOPOLOGY_INVALID/);
    expect(result.error).toContain('backend.workers: must be >= 1');
    expect(result.error).toContain('gateway.replicas: 3 replicas need the Redis broker');
    expect(result.resources).toEqual([]);
  }, SPAWN_TIMEOUT_MS);

  it('dispatches target aws to infra/targets/aws and returns its outputs, creating no Docker containers', async () => {
    const { code, result, stderr } = await loadEntrypoint({ 'aws:region': 'eu-west-1', 'replyx:target': 'aws' });
    expect(result.error, stderr).toBeUndefined();
    expect(code).toBe(0);
    expect(result.outputs).toMatchObject({ target: 'aws', wsRoute: 'gateway' });
    const types = new Set(result.resources.map((r) => r.type));
    expect(types.has('replyx:aws:Stack')).toBe(true);
    expect(types.has('replyx:docker:Stack')).toBe(false);
    expect(types.has('docker:index/container:Container')).toBe(false);
  }, SPAWN_TIMEOUT_MS);

  it('tells a local stack to use npm start, registering nothing', async () => {
    const { code, result } = await loadEntrypoint(await stackConfig('local'));
    expect(code).toBe(1);
    expect(result.error).toMatch(/RPX_TARGET_LOCAL_NOT_PULUMI: .*npm start/);
    expect(result.resources).toEqual([]);
  }, SPAWN_TIMEOUT_MS);
});
