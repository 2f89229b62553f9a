import { ReplyxError, type ErrorCode } from '../../errors.js';
import { createCommandRunner, type CommandResult, type CommandRunner } from '../../processes/run.js';
import { CONFIG_NAMESPACE, isStackName, type WsRoute } from '../../topology/index.js';
import { BACKEND_WORKERS_RANGE } from '../../topology/ranges.js';
import { AWS_SERVICES, type AwsServiceName } from './tasks.js';

// The rollback script's AWS path. Desired state lives in the stack config, so a rollback is:
// set the config (the next `pulumi up` keeps it), run `pulumi up`, then ask ECS how each
// service's deployment ended. That last step matters: when new tasks never get healthy, the
// deployment circuit breaker quietly rolls the service back to the previous task definition,
// and "pulumi up succeeded" would otherwise hide that the change is not live.

/** What to change: the same knobs as `npm run rollback` (`--ws-to`, `--backend-workers`). */
export interface AwsRollbackChange {
  readonly wsRoute?: WsRoute;
  readonly backendWorkers?: number;
}

/** Input of {@link planAwsRollback}. */
export interface AwsRollbackInput extends AwsRollbackChange {
  /** Pulumi stack name, e.g. `aws`. */
  readonly stack: string;
  /** Directory holding Pulumi.yaml, passed to every pulumi command as `--cwd`; unset: the current directory. */
  readonly projectDir?: string;
}

/** The commands of an AWS rollback, each an argv array (never a shell string). */
export interface AwsRollbackPlan {
  readonly stack: string;
  readonly configCommands: readonly (readonly string[])[];
  readonly upCommand: readonly string[];
  readonly outputsCommand: readonly string[];
}


function argsError(message: string, fix: string): ReplyxError {
  return new ReplyxError('RPX_AWS_ROLLBACK_ARGS', message, fix);
}

/** A pulumi argv for this project: `--cwd` last when a project directory is given. */
export function pulumiArgv(args: readonly string[], projectDir?: string): string[] {
  return ['pulumi', ...args, ...(projectDir !== undefined ? ['--cwd', projectDir] : [])];
}

/** The `pulumi up` that deploys an AWS stack (argv). */
export function awsUpCommand(stack: string, projectDir?: string): string[] {
  return pulumiArgv(['up', '--stack', stack, '--yes', '--non-interactive'], projectDir);
}

/** Plans an AWS rollback (pure): the `pulumi config set` commands for the change, `pulumi up`, and the outputs query. */
export function planAwsRollback(input: AwsRollbackInput): AwsRollbackPlan {
  const { stack, wsRoute, backendWorkers } = input;
  if (!isStackName(stack)) throw argsError(`not a stack name: ${JSON.stringify(stack)}`, 'pass --stack with the name of your AWS stack, e.g. --stack aws');
  if (wsRoute === undefined && backendWorkers === undefined) throw argsError('nothing to change', 'pass --ws-to backend|gateway and/or --backend-workers N');
  if (wsRoute !== undefined && wsRoute !== 'gateway' && wsRoute !== 'backend') throw argsError(`--ws-to must be gateway or backend, got ${JSON.stringify(wsRoute)}`, 'pass --ws-to backend or --ws-to gateway');
  const { min, max } = BACKEND_WORKERS_RANGE;
  if (backendWorkers !== undefined && (!Number.isInteger(backendWorkers) || backendWorkers < min || backendWorkers > max)) {
    throw argsError(`--backend-workers must be an integer from ${min} to ${max}, got ${String(backendWorkers)}`, 'pass --backend-workers 1 (or the worker count to restore)');
  }
  const pulumi = (...args: string[]) => pulumiArgv(args, input.projectDir);
  const set = (key: string, value: string, path: boolean) => [...pulumi('config', 'set', '--stack', stack, ...(path ? ['--path'] : []), `${CONFIG_NAMESPACE}:${key}`), '--', value];
  const configCommands: string[][] = [];
  if (wsRoute !== undefined) configCommands.push(set('wsRoute', wsRoute, false));
  // With --path, Pulumi stores an integer value as a number inside the replyx:backend object.
  if (backendWorkers !== undefined) configCommands.push(set('backend.workers', String(backendWorkers), true));
  return {
    stack,
    configCommands,
    upCommand: awsUpCommand(stack, input.projectDir),
    outputsCommand: pulumi('stack', 'output', '--stack', stack, '--json'),
  };
}

/** The stack outputs the rollback needs (written by createAwsStack). */
export interface AwsRolloutTargets {
  readonly region: string;
  readonly clusterName: string;
  readonly serviceNames: Readonly<Record<AwsServiceName, string>>;
  readonly taskDefinitionArns: Readonly<Record<AwsServiceName, string>>;
}

/** Reads the rollout targets from `pulumi stack output --json`; throws RPX_AWS_OUTPUTS when a key is missing. */
export function parseStackOutputs(json: string): AwsRolloutTargets {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch (err) {
    throw new ReplyxError('RPX_AWS_OUTPUTS', 'pulumi stack output --json did not print JSON', 'run `pulumi stack output --json --stack <stack>` by hand and check the stack exists', { cause: err });
  }
  const o = (value ?? {}) as Record<string, unknown>;
  const isServiceMap = (v: unknown): v is Record<AwsServiceName, string> =>
    typeof v === 'object' && v !== null && AWS_SERVICES.every((s) => typeof (v as Record<string, unknown>)[s] === 'string');
  const missing = [
    typeof o.region === 'string' ? undefined : 'region',
    typeof o.clusterName === 'string' ? undefined : 'clusterName',
    isServiceMap(o.serviceNames) ? undefined : 'serviceNames',
    isServiceMap(o.taskDefinitionArns) ? undefined : 'taskDefinitionArns',
  ].filter((k): k is string => k !== undefined);
  if (missing.length > 0) {
    throw new ReplyxError('RPX_AWS_OUTPUTS', `the stack outputs lack ${missing.join(', ')}`, 'run `pulumi up` for this stack once with this version of replyx-stack, then roll back again');
  }
  return {
    region: o.region as string,
    clusterName: o.clusterName as string,
    serviceNames: o.serviceNames as Record<AwsServiceName, string>,
    taskDefinitionArns: o.taskDefinitionArns as Record<AwsServiceName, string>,
  };
}

/** The AWS CLI call that reports the services' deployments (argv array). */
export function describeServicesCommand(targets: AwsRolloutTargets): readonly string[] {
  return ['aws', 'ecs', 'describe-services', '--region', targets.region, '--cluster', targets.clusterName, '--services', ...AWS_SERVICES.map((s) => targets.serviceNames[s]), '--output', 'json'];
}

/** How one service's deployment ended. */
export type RolloutStatus = 'completed' | 'in-progress' | 'failed' | 'rolled-back' | 'missing';

/** The rollout state of one ECS service after `pulumi up`. */
export interface ServiceRollout {
  readonly service: AwsServiceName;
  readonly name: string;
  readonly status: RolloutStatus;
  readonly detail: string;
}

interface EcsDeployment {
  readonly status?: string;
  readonly taskDefinition?: string;
  readonly rolloutState?: string;
  readonly rolloutStateReason?: string;
  readonly runningCount?: number;
  readonly desiredCount?: number;
  readonly failedTasks?: number;
}

interface EcsService {
  readonly serviceName?: string;
  readonly deployments?: readonly EcsDeployment[];
}

const revision = (arn: string | undefined) => (arn ?? '?').split('/').pop() ?? '?';

/**
 * Reads `aws ecs describe-services --output json` (pure) and says, per service, whether the
 * task definition this `up` deployed is the one running: a FAILED deployment or a PRIMARY
 * deployment on another revision (the circuit breaker's rollback) is a failure.
 */
export function parseServiceRollouts(json: string, targets: AwsRolloutTargets): readonly ServiceRollout[] {
  let parsed: { services?: readonly EcsService[]; failures?: readonly { arn?: string; reason?: string }[] };
  try {
    parsed = JSON.parse(json) as typeof parsed;
  } catch (err) {
    throw new ReplyxError('RPX_AWS_DESCRIBE', 'aws ecs describe-services did not print JSON', 'run the printed aws command by hand; check the AWS CLI v2 is installed and configured', { cause: err });
  }
  return AWS_SERVICES.map((service): ServiceRollout => {
    const name = targets.serviceNames[service];
    const expected = targets.taskDefinitionArns[service];
    const found = (parsed.services ?? []).find((s) => s.serviceName === name);
    if (!found) {
      const reason = (parsed.failures ?? []).find((f) => f.arn?.endsWith(`/${name}`))?.reason ?? 'not in the cluster';
      return { service, name, status: 'missing', detail: `service ${name}: ${reason}` };
    }
    const deployments = found.deployments ?? [];
    const failed = deployments.find((d) => d.rolloutState === 'FAILED');
    const primary = deployments.find((d) => d.status === 'PRIMARY');
    if (failed) {
      return { service, name, status: 'failed', detail: `deployment of ${revision(failed.taskDefinition)} FAILED: ${failed.rolloutStateReason ?? 'no reason given'} (${failed.failedTasks ?? 0} failed tasks)` };
    }
    if (!primary) return { service, name, status: 'missing', detail: 'no PRIMARY deployment' };
    if (primary.taskDefinition !== expected) {
      return {
        service,
        name,
        status: 'rolled-back',
        detail: `running ${revision(primary.taskDefinition)}, but this deploy was ${revision(expected)}: the circuit breaker rolled it back${primary.rolloutStateReason ? ` (${primary.rolloutStateReason})` : ''}`,
      };
    }
    if (primary.rolloutState === 'IN_PROGRESS') {
      return { service, name, status: 'in-progress', detail: `${revision(expected)}: ${primary.runningCount ?? 0}/${primary.desiredCount ?? '?'} tasks running` };
    }
    return { service, name, status: 'completed', detail: `${revision(expected)}: ${primary.runningCount ?? 0}/${primary.desiredCount ?? '?'} tasks running` };
  });
}

export type { CommandResult, CommandRunner };

/** The AWS rollback's runner: a missing `pulumi` or `aws` is RPX_AWS_CLI_MISSING. */
export const runCommand: CommandRunner = createCommandRunner('RPX_AWS_CLI_MISSING');

/** One executed step, for the script's step-by-step output. */
export interface RollbackStep {
  readonly name: string;
  readonly argv: readonly string[];
  readonly ms: number;
}

/** What {@link runAwsRollback} reports. */
export interface AwsRollbackResult {
  /** True only when every service runs the task definition this `up` deployed. */
  readonly ok: boolean;
  readonly steps: readonly RollbackStep[];
  readonly services: readonly ServiceRollout[];
  /** What to do when `ok` is false. */
  readonly fix: string;
}

/** Options of {@link runAwsRollback}. */
export interface AwsRollbackOptions {
  readonly run?: CommandRunner;
  /** How long to wait for deployments still IN_PROGRESS after `up` (default 600 000 ms). */
  readonly rolloutTimeoutMs?: number;
  /** Pause between describe-services polls (default 15 000 ms). */
  readonly pollIntervalMs?: number;
  readonly sleep?: (ms: number) => Promise<void>;
  readonly now?: () => number;
  /** Called as each step starts, for progress output. */
  readonly onStep?: (name: string, argv: readonly string[]) => void;
}

function tail(text: string, lines = 5): string {
  return text.trim().split('\n').slice(-lines).join('\n');
}

/**
 * Runs an AWS rollback: sets the stack config, runs `pulumi up`, then polls ECS until every
 * service's deployment is settled and reports any that failed or were rolled back by the
 * circuit breaker. Command failures throw a ReplyxError; rollout failures return `ok: false`.
 */
export async function runAwsRollback(input: AwsRollbackInput, options: AwsRollbackOptions = {}): Promise<AwsRollbackResult> {
  const plan = planAwsRollback(input);
  const run = options.run ?? runCommand;
  const now = options.now ?? Date.now;
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const steps: RollbackStep[] = [];
  const step = async (name: string, argv: readonly string[], code: ErrorCode, fix: string, stream = false): Promise<CommandResult> => {
    options.onStep?.(name, argv);
    const started = now();
    const result = await run(argv, { stream });
    steps.push({ name, argv, ms: now() - started });
    if (result.exitCode !== 0) {
      throw new ReplyxError(code, `${name} failed (exit ${result.exitCode}): ${tail(result.stderr || result.stdout, 1) || 'no output'}`, fix, { details: tail(result.stderr || result.stdout).split('\n') });
    }
    return result;
  };

  for (const argv of plan.configCommands) {
    await step(`set ${argv.find((a) => a.startsWith(`${CONFIG_NAMESPACE}:`)) ?? 'config'}`, argv, 'RPX_AWS_ROLLBACK_CONFIG', `check that stack ${plan.stack} exists (pulumi stack ls) and you are logged in (pulumi whoami)`);
  }
  await step('pulumi up', plan.upCommand, 'RPX_AWS_ROLLBACK_UP', 'read the pulumi output above; the config change is saved, so fix the cause and run `pulumi up` again, or undo with npm run rollback -- --undo --target aws', true);
  const targets = parseStackOutputs((await step('read stack outputs', plan.outputsCommand, 'RPX_AWS_OUTPUTS', `run \`pulumi stack output --json --stack ${plan.stack}\` by hand`)).stdout);

  const describe = describeServicesCommand(targets);
  const deadline = now() + (options.rolloutTimeoutMs ?? 600_000);
  let services: readonly ServiceRollout[];
  for (;;) {
    const result = await step('check ECS rollouts', describe, 'RPX_AWS_DESCRIBE', 'check the AWS CLI credentials and region (aws sts get-caller-identity)');
    services = parseServiceRollouts(result.stdout, targets);
    if (!services.some((s) => s.status === 'in-progress') || now() >= deadline) break;
    await sleep(options.pollIntervalMs ?? 15_000);
  }
  const bad = services.filter((s) => s.status !== 'completed');
  const ok = bad.length === 0;
  const fix = ok
    ? ''
    : bad.some((s) => s.status === 'rolled-back' || s.status === 'failed')
      ? `ECS rolled back ${bad.map((s) => s.name).join(', ')}: the new tasks did not become healthy. Read their logs (aws logs tail <log group> --since 30m --region ${targets.region}), fix the cause, and run pulumi up --stack ${plan.stack} again`
      : `deployments of ${bad.map((s) => s.name).join(', ')} did not settle in time; watch them with: ${describe.join(' ')}`;
  return { ok, steps, services, fix };
}
