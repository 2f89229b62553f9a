import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { secretsFile } from '../targets/local/secrets.js';
import { planRollback, stateOf } from './rollback/plan.js';
import { readStackFile, REPO_DIR, resolveContext, stateDirFor, surfaceFor } from './stack.js';
import type { TargetSurface } from './surface.js';

// Every target answers the same questions through its surface; these tests ask each of them
// (the local one from a state directory with secrets and recorded ports, nothing running).

let dir: string;
const secrets = { jwtSecret: 'j'.repeat(43), publishKey: 'p'.repeat(43), debugToken: 'd'.repeat(43), siteTokenSecret: 's'.repeat(43), widgetTokenSecret: 'w'.repeat(43), redisGatewayPassword: 'g'.repeat(43), redisPublisherPassword: 'u'.repeat(43), redisAdminPassword: 'a'.repeat(43), gatewayDatabasePassword: 'q'.repeat(43) };

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'replyx-surface-'));
  for (const stack of ['local', 'dev']) await writeFile(path.join(dir, `Pulumi.${stack}.yaml`), await readFile(path.join(REPO_DIR, `Pulumi.${stack}.yaml`), 'utf8'));
  await writeFile(path.join(dir, 'Pulumi.aws.yaml'), 'config:\n  replyx:target: aws\n');
  const state = stateDirFor({ projectDir: dir });
  await mkdir(state, { recursive: true });
  await writeFile(secretsFile(state), JSON.stringify(secrets));
  await writeFile(path.join(state, 'state.json'), JSON.stringify({ stack: 'local', ports: { postgres: 41001, redis: 41002, backend: 41003, 'ws-gateway': 41004, nginx: 41005 } }));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const surface = async (stack: string): Promise<TargetSurface> => surfaceFor(await readStackFile({ stack, 'project-dir': dir }));

describe('target surfaces', () => {
  it('local: runs on the recorded ports (an old ws-gateway key included) and signs its own probe token', async () => {
    const s = await surface('local');
    expect(s.target).toBe('local');
    expect(s.describe().endpoints).toEqual({ nginx: 'http://127.0.0.1:41005', backend: 'http://127.0.0.1:41003', gateway: 'http://127.0.0.1:41004', ws: 'ws://127.0.0.1:41005' });
    expect(s.describe().displayNames.gateway).toBe('replyx-ws-gateway');
    expect(s.describe().stateDir).toBe(path.join(dir, '.stack'));
    expect((await s.credentials({})).debugToken).toBe(secrets.debugToken);
    expect(s.renderNginx(s.topology)).toContain(`listen 127.0.0.1:41005`);
    expect(s.upCommand()).toEqual(['npm', 'start', '--', '--stack', 'local']);
  });

  it('docker: container names, credentials from the environment, pulumi up in the project', async () => {
    const s = await surface('dev');
    expect(s.describe().displayNames.gateway).toBe('replyx-ws-gateway');
    expect(await s.credentials({ REPLYX_ADMIN_TOKEN: 'a' })).toEqual({ adminToken: 'a' });
    expect(s.upCommand()).toEqual(['pulumi', '--cwd', dir, 'up', '--stack', 'dev', '--yes', '--non-interactive']);
    expect(s.describe().liveUnavailable).toBeUndefined();
  });

  it('aws: live rules unavailable from outside the VPC; a change is pulumi config set + up', async () => {
    const s = await surface('aws');
    expect(s.describe().liveUnavailable).toMatch(/VPC/);
    expect(await s.observe(async () => ({ exitCode: 0, stdout: '', stderr: '' }))).toEqual({});
    const to = s.topologyOf('config:\n  replyx:target: aws\n  replyx:wsRoute: backend\n');
    const lines = s.dryRun(planRollback(stateOf(s.topology), stateOf(to)), { wsRoute: 'backend' }, '');
    expect(lines[0]).toBe(`pulumi config set --stack aws replyx:wsRoute --cwd ${dir} -- backend`);
    expect(lines).toContain(`pulumi up --stack aws --yes --non-interactive --cwd ${dir}`);
  });

  it('every target numbers the same rollback steps in its dry run (docker restarts the backend after the route moved)', async () => {
    for (const stack of ['local', 'dev']) {
      const s = await surface(stack);
      const plan = planRollback(stateOf(s.topology), { wsRoute: 'backend', backendWorkers: 1 });
      const toText = (await readFile(path.join(dir, `Pulumi.${stack}.yaml`), 'utf8')).replace(/replyx:wsRoute: gateway/, 'replyx:wsRoute: backend');
      const lines = s.dryRun(plan, { wsRoute: 'backend', backendWorkers: 1 }, toText);
      const steps = stack === 'dev' ? ['record', 'render', 'validate', 'swap', 'reload', 'drain', 'restart backend', 'verify', 'persist'] : plan.steps;
      expect(plan.steps[1], 'locally the backend restarts first').toBe('restart backend');
      expect(lines.map((l) => l.trim().split(/\s+/)[1])).toEqual(steps.map((step) => step.split(' ')[0]));
    }
  });

  it('resolveContext hands the scripts the surface, its topology and endpoints', async () => {
    const ctx = await resolveContext({ stack: 'local', 'project-dir': dir });
    expect(ctx.surface.target).toBe('local');
    expect(ctx.topology.gateway.port).toBe(41004);
    expect(ctx.endpoints.gateway).toBe('http://127.0.0.1:41004');
    await expect(resolveContext({ stack: 'local', 'project-dir': dir, 'state-dir': path.join(dir, 'nowhere') })).rejects.toMatchObject({ code: 'RPX_STACK_NOT_STARTED' });
  });
});
