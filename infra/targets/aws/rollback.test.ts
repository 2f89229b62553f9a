import { describe, expect, it } from 'vitest';
import { isReplyxError } from '../../errors.js';
import { topologyInputFromConfig, validateTopology } from '../../topology/index.js';
import {
  describeServicesCommand,
  parseServiceRollouts,
  parseStackOutputs,
  planAwsRollback,
  runAwsRollback,
  runCommand,
  type AwsRolloutTargets,
  type CommandResult,
  type CommandRunner,
} from './rollback.js';

// The rollback script's AWS path with the boundary (pulumi and aws CLIs) replaced by a
// scripted runner: each test says what the CLIs answer and checks the argv sent and the verdict.

const TD = (family: string, rev: number) => `arn:aws:ecs:eu-west-1:123456789012:task-definition/${family}:${rev}`;

const targets: AwsRolloutTargets = {
  region: 'eu-west-1',
  clusterName: 'replyx-aws',
  serviceNames: { backend: 'replyx-backend', gateway: 'replyx-ws-gateway', nginx: 'replyx-nginx' },
  taskDefinitionArns: { backend: TD('replyx-aws-backend', 5), gateway: TD('replyx-aws-ws-gateway', 3), nginx: TD('replyx-aws-nginx', 8) },
};

const stackOutputs = JSON.stringify({ ...targets, publicUrl: 'http://x', logGroupNames: {} });

type Deployment = { status: string; taskDefinition: string; rolloutState: string; rolloutStateReason?: string; runningCount?: number; desiredCount?: number; failedTasks?: number };

function describeJson(overrides: Partial<Record<'backend' | 'gateway' | 'nginx', Deployment[]>> = {}, omit: string[] = []): string {
  const settled = (service: 'backend' | 'gateway' | 'nginx'): Deployment[] => [
    { status: 'PRIMARY', taskDefinition: targets.taskDefinitionArns[service], rolloutState: 'COMPLETED', runningCount: 1, desiredCount: 1 },
  ];
  const services = (['backend', 'gateway', 'nginx'] as const)
    .filter((s) => !omit.includes(s))
    .map((s) => ({ serviceName: targets.serviceNames[s], deployments: overrides[s] ?? settled(s) }));
  const failures = omit.map((s) => ({ arn: `arn:aws:ecs:eu-west-1:123456789012:service/replyx-aws/${targets.serviceNames[s as 'backend']}`, reason: 'MISSING' }));
  return JSON.stringify({ services, failures });
}

/** A runner that answers by the command's first words and records every argv. */
function scriptedRunner(answers: { up?: CommandResult; config?: CommandResult; describe: string[] }) {
  const calls: (readonly string[])[] = [];
  let describes = 0;
  const ok = (stdout = ''): CommandResult => ({ exitCode: 0, stdout, stderr: '' });
  const run: CommandRunner = (argv) => {
    calls.push(argv);
    const key = argv.slice(0, 3).join(' ');
    if (key === 'pulumi config set') return Promise.resolve(answers.config ?? ok());
    if (key.startsWith('pulumi up')) return Promise.resolve(answers.up ?? ok('Resources: 3 updated'));
    if (key === 'pulumi stack output') return Promise.resolve(ok(stackOutputs));
    if (key === 'aws ecs describe-services') {
      const answer = answers.describe[Math.min(describes, answers.describe.length - 1)]!;
      describes += 1;
      return Promise.resolve(ok(answer));
    }
    return Promise.resolve({ exitCode: 127, stdout: '', stderr: `unexpected ${argv.join(' ')}` });
  };
  return { run, calls };
}

const noWait = { sleep: () => Promise.resolve(), pollIntervalMs: 1 };

describe('planAwsRollback', () => {
  it('sets wsRoute and backend.workers in the stack config, then runs pulumi up, as argv arrays', () => {
    const plan = planAwsRollback({ stack: 'aws', wsRoute: 'backend', backendWorkers: 1 });
    expect(plan.configCommands).toEqual([
      ['pulumi', 'config', 'set', '--stack', 'aws', 'replyx:wsRoute', '--', 'backend'],
      ['pulumi', 'config', 'set', '--stack', 'aws', '--path', 'replyx:backend.workers', '--', '1'],
    ]);
    expect(plan.upCommand).toEqual(['pulumi', 'up', '--stack', 'aws', '--yes', '--non-interactive']);
    expect(plan.outputsCommand).toEqual(['pulumi', 'stack', 'output', '--stack', 'aws', '--json']);
  });

  it('runs every pulumi command in the project directory when one is given', () => {
    const plan = planAwsRollback({ stack: 'aws', wsRoute: 'backend', projectDir: '/srv/replyx' });
    expect(plan.configCommands[0]).toEqual(['pulumi', 'config', 'set', '--stack', 'aws', 'replyx:wsRoute', '--cwd', '/srv/replyx', '--', 'backend']);
    expect(plan.upCommand).toEqual(['pulumi', 'up', '--stack', 'aws', '--yes', '--non-interactive', '--cwd', '/srv/replyx']);
    expect(plan.outputsCommand.slice(-2)).toEqual(['--cwd', '/srv/replyx']);
  });

  it('plans only what is asked', () => {
    expect(planAwsRollback({ stack: 'prod', wsRoute: 'gateway' }).configCommands).toEqual([['pulumi', 'config', 'set', '--stack', 'prod', 'replyx:wsRoute', '--', 'gateway']]);
    expect(planAwsRollback({ stack: 'prod', backendWorkers: 4 }).configCommands).toHaveLength(1);
  });

  it('writes config the topology loader reads back as the intended values', () => {
    // What `pulumi config set --path replyx:backend.workers 1` stores: a number inside the object.
    const config = { 'replyx:target': 'aws', 'replyx:wsRoute': 'backend', 'replyx:backend': { workers: 1 } };
    const { topology } = validateTopology(topologyInputFromConfig(config));
    expect([topology.wsRoute, topology.backend.workers]).toEqual(['backend', 1]);
  });

  it('rejects bad input with RPX_AWS_ROLLBACK_ARGS before running anything', () => {
    const code = (f: () => unknown) => {
      try {
        f();
      } catch (err) {
        return isReplyxError(err) ? err.code : 'other';
      }
      return 'none';
    };
    expect(code(() => planAwsRollback({ stack: 'aws' }))).toBe('RPX_AWS_ROLLBACK_ARGS');
    expect(code(() => planAwsRollback({ stack: 'aws', backendWorkers: 0 }))).toBe('RPX_AWS_ROLLBACK_ARGS');
    expect(code(() => planAwsRollback({ stack: 'aws', backendWorkers: 1.5 }))).toBe('RPX_AWS_ROLLBACK_ARGS');
    expect(code(() => planAwsRollback({ stack: 'aws', wsRoute: 'nginx' as never }))).toBe('RPX_AWS_ROLLBACK_ARGS');
    expect(code(() => planAwsRollback({ stack: 'aws; rm -rf /', wsRoute: 'backend' }))).toBe('RPX_AWS_ROLLBACK_ARGS');
  });
});

describe('parseServiceRollouts', () => {
  it('reports completed when every service runs the deployed revision', () => {
    expect(parseServiceRollouts(describeJson(), targets).map((s) => s.status)).toEqual(['completed', 'completed', 'completed']);
  });

  it('reports a FAILED deployment as failed, with its reason', () => {
    const json = describeJson({
      gateway: [
        { status: 'PRIMARY', taskDefinition: TD('replyx-aws-ws-gateway', 2), rolloutState: 'IN_PROGRESS' },
        { status: 'ACTIVE', taskDefinition: TD('replyx-aws-ws-gateway', 3), rolloutState: 'FAILED', rolloutStateReason: 'ECS deployment circuit breaker: tasks failed to start.', failedTasks: 3 },
      ],
    });
    const gateway = parseServiceRollouts(json, targets)[1]!;
    expect(gateway.status).toBe('failed');
    expect(gateway.detail).toContain('circuit breaker');
    expect(gateway.detail).toContain('replyx-aws-ws-gateway:3');
  });

  it('reports a silent rollback (PRIMARY on an older revision, failed deployment gone) as rolled-back', () => {
    const json = describeJson({ nginx: [{ status: 'PRIMARY', taskDefinition: TD('replyx-aws-nginx', 7), rolloutState: 'COMPLETED' }] });
    const nginx = parseServiceRollouts(json, targets)[2]!;
    expect(nginx.status).toBe('rolled-back');
    expect(nginx.detail).toContain('replyx-aws-nginx:7');
    expect(nginx.detail).toContain('replyx-aws-nginx:8');
  });

  it('reports a deployment still rolling out as in-progress', () => {
    const json = describeJson({ backend: [{ status: 'PRIMARY', taskDefinition: targets.taskDefinitionArns.backend, rolloutState: 'IN_PROGRESS', runningCount: 1, desiredCount: 2 }] });
    expect(parseServiceRollouts(json, targets)[0]).toMatchObject({ status: 'in-progress', detail: expect.stringContaining('1/2') as unknown });
  });

  it('reports a service ECS does not know as missing', () => {
    expect(parseServiceRollouts(describeJson({}, ['gateway']), targets)[1]).toMatchObject({ status: 'missing', detail: expect.stringContaining('MISSING') as unknown });
  });

  it('throws RPX_AWS_DESCRIBE on output that is not JSON', () => {
    expect(() => parseServiceRollouts('An error occurred', targets)).toThrow(/describe-services/);
  });
});

describe('parseStackOutputs and describeServicesCommand', () => {
  it('reads the outputs written by createAwsStack and asks ECS about exactly those services', () => {
    const t = parseStackOutputs(stackOutputs);
    expect(t).toEqual(targets);
    expect(describeServicesCommand(t)).toEqual([
      'aws', 'ecs', 'describe-services', '--region', 'eu-west-1', '--cluster', 'replyx-aws', '--services', 'replyx-backend', 'replyx-ws-gateway', 'replyx-nginx', '--output', 'json',
    ]);
  });

  it('names the missing outputs of a stack deployed by an older version', () => {
    expect(() => parseStackOutputs(JSON.stringify({ region: 'x' }))).toThrow(/clusterName, serviceNames, taskDefinitionArns/);
  });
});

describe('runAwsRollback', () => {
  it('runs config set, pulumi up, stack output and describe-services in that order and reports success', async () => {
    const { run, calls } = scriptedRunner({ describe: [describeJson()] });
    const result = await runAwsRollback({ stack: 'aws', wsRoute: 'backend', projectDir: '/srv/replyx' }, { run, ...noWait });
    expect(result.ok).toBe(true);
    expect(result.fix).toBe('');
    for (const c of calls.filter((x) => x[0] === 'pulumi')) expect(c).toContain('/srv/replyx');
    expect(calls.map((c) => c.slice(0, 3).join(' '))).toEqual(['pulumi config set', 'pulumi up --stack', 'pulumi stack output', 'aws ecs describe-services']);
    expect(result.steps.map((s) => s.name)).toEqual(['set replyx:wsRoute', 'pulumi up', 'read stack outputs', 'check ECS rollouts']);
  });

  it('reports a circuit-breaker rollback after a successful pulumi up as a failure', async () => {
    const rolledBack = describeJson({ backend: [{ status: 'PRIMARY', taskDefinition: TD('replyx-aws-backend', 4), rolloutState: 'COMPLETED' }] });
    const { run } = scriptedRunner({ describe: [rolledBack] });
    const result = await runAwsRollback({ stack: 'aws', backendWorkers: 1 }, { run, ...noWait });
    expect(result.ok).toBe(false);
    expect(result.services.find((s) => s.service === 'backend')!.status).toBe('rolled-back');
    expect(result.fix).toContain('replyx-backend');
    expect(result.fix).toContain('rolled back');
  });

  it('reports a FAILED rollout as a failure', async () => {
    const failed = describeJson({
      gateway: [
        { status: 'PRIMARY', taskDefinition: TD('replyx-aws-ws-gateway', 2), rolloutState: 'IN_PROGRESS' },
        { status: 'ACTIVE', taskDefinition: TD('replyx-aws-ws-gateway', 3), rolloutState: 'FAILED', rolloutStateReason: 'circuit breaker' },
      ],
    });
    const { run } = scriptedRunner({ describe: [failed] });
    const result = await runAwsRollback({ stack: 'aws', wsRoute: 'gateway' }, { run, ...noWait });
    expect(result.ok).toBe(false);
    expect(result.services[1]!.status).toBe('failed');
  });

  it('polls while deployments are in progress, until they settle', async () => {
    const rolling = describeJson({ nginx: [{ status: 'PRIMARY', taskDefinition: targets.taskDefinitionArns.nginx, rolloutState: 'IN_PROGRESS' }] });
    const { run, calls } = scriptedRunner({ describe: [rolling, rolling, describeJson()] });
    const result = await runAwsRollback({ stack: 'aws', wsRoute: 'backend' }, { run, ...noWait });
    expect(result.ok).toBe(true);
    expect(calls.filter((c) => c[0] === 'aws')).toHaveLength(3);
  });

  it('gives up polling at the timeout and says the rollout did not settle', async () => {
    const rolling = describeJson({ nginx: [{ status: 'PRIMARY', taskDefinition: targets.taskDefinitionArns.nginx, rolloutState: 'IN_PROGRESS' }] });
    const { run } = scriptedRunner({ describe: [rolling] });
    let clock = 0;
    const result = await runAwsRollback(
      { stack: 'aws', wsRoute: 'backend' },
      { run, rolloutTimeoutMs: 60_000, pollIntervalMs: 15_000, now: () => clock, sleep: (ms) => Promise.resolve(void (clock += ms)) },
    );
    expect(result.ok).toBe(false);
    expect(result.services[2]!.status).toBe('in-progress');
    expect(result.fix).toContain('did not settle');
  });

  it('stops with RPX_AWS_ROLLBACK_UP when pulumi up fails, before asking ECS', async () => {
    const { run, calls } = scriptedRunner({ up: { exitCode: 255, stdout: '', stderr: 'error: update failed' }, describe: [describeJson()] });
    const err = await runAwsRollback({ stack: 'aws', wsRoute: 'backend' }, { run, ...noWait }).catch((e: unknown) => e);
    expect(isReplyxError(err) && err.code).toBe('RPX_AWS_ROLLBACK_UP');
    expect((err as Error).message).toContain('update failed');
    expect(calls.some((c) => c[0] === 'aws')).toBe(false);
  });

  it('stops with RPX_AWS_ROLLBACK_CONFIG when the config cannot be set, before pulumi up', async () => {
    const { run, calls } = scriptedRunner({ config: { exitCode: 1, stdout: '', stderr: 'error: no stack named aws' }, describe: [describeJson()] });
    const err = await runAwsRollback({ stack: 'aws', wsRoute: 'backend' }, { run, ...noWait }).catch((e: unknown) => e);
    expect(isReplyxError(err) && err.code).toBe('RPX_AWS_ROLLBACK_CONFIG');
    expect(calls.some((c) => c[1] === 'up')).toBe(false);
  });
});

describe('runCommand (the real runner)', () => {
  it('runs an argv array without a shell and captures output and exit code', async () => {
    const result = await runCommand([process.execPath, '-e', 'process.stdout.write(process.argv[1]); process.exit(3)', '$(echo not a shell); *']);
    expect(result).toEqual({ exitCode: 3, stdout: '$(echo not a shell); *', stderr: '' });
  });

  it('turns a missing CLI into RPX_AWS_CLI_MISSING with an install hint', async () => {
    const err = await runCommand(['replyx-no-such-cli-xyz', 'up']).catch((e: unknown) => e);
    expect(isReplyxError(err) && err.code).toBe('RPX_AWS_CLI_MISSING');
  });
});
