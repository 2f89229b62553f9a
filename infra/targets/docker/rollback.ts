import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ReplyxError } from '../../errors.js';
import { runHealth } from '../../operate/health.js';
import type { ProbeCredentials } from '../../operate/live-state.js';
import { writeAtomic } from '../../operate/rollback/history.js';
import { persistStackChange } from '../../operate/rollback/persist.js';
import { planRollback, pulumiConfigSetArgv, pulumiUpArgv, stateOf, type RollbackChange, type RollbackPlan } from '../../operate/rollback/plan.js';
import { withTopology, type StackContext } from '../../operate/stack.js';
import type { StepRunner } from '../../operate/steps.js';
import type { ApplyOptions, ApplyOutcome } from '../../operate/surface.js';
import { runChecked } from '../../processes/run.js';
import { renderNginxConfig } from '../../render/nginx.js';
import type { DockerContainerNames } from '../../render/service-hosts.js';
import { topologyFromStackText, type Topology } from '../../topology/index.js';
import { planDockerStack } from './plan.js';

// The docker target's rollback, as argv arrays against the Docker daemon: the rendered config
// goes into the host directory nginx bind-mounts, `docker exec <nginx> nginx -t` checks it,
// a rename swaps it and `nginx -s reload` applies it; `docker restart` drains the old /ws/
// server (the gateway closes with 4200 on SIGTERM). A new backend worker count is new container
// env, which only Pulumi can recreate: the config is set and `pulumi up` replaces the container.

/** The docker commands of a rollback (pure), for --dry-run and tests. */
export interface DockerRollbackCommands {
  readonly validate: readonly string[];
  readonly reload: readonly string[];
  readonly drain?: readonly string[];
  readonly configSet: readonly (readonly string[])[];
  readonly up?: readonly string[];
}

/** The running docker stack: container names and where nginx's config lives on the host and inside. */
export interface RunningDockerStack {
  readonly containers: DockerContainerNames;
  readonly hostConfigFile: string;
  readonly containerConfigFile: string;
}

/** Plans the docker commands from the stack and the rollback plan (pure). */
export function dockerRollbackCommands(ctx: Pick<StackContext, 'stack' | 'projectDir'>, d: RunningDockerStack, to: Topology, plan: RollbackPlan, change: RollbackChange): DockerRollbackCommands {
  const nextInContainer = `${d.containerConfigFile}.next`;
  // The gateway's stop timeout covers its drain window: the restart gives it that long.
  const containers = planDockerStack(to, { projectRoot: ctx.projectDir }).containers;
  const drainGraceS = containers.find((c) => c.service === 'gateway')!.stopTimeoutS;
  // The backend's covers every request it holds (legacy /ws/ clients are dropped at once).
  const backendGraceS = containers.find((c) => c.service === 'backend')!.stopTimeoutS;
  const drain =
    plan.drain === 'gateway'
      ? ['docker', 'restart', '--time', String(drainGraceS), d.containers.gateway]
      : plan.drain === 'backend'
        ? ['docker', 'restart', '--time', String(backendGraceS), d.containers.backend]
        : undefined;
  return {
    validate: ['docker', 'exec', d.containers.nginx, 'nginx', '-t', '-q', '-c', nextInContainer],
    reload: ['docker', 'exec', d.containers.nginx, 'nginx', '-s', 'reload'],
    ...(drain ? { drain } : {}),
    configSet: pulumiConfigSetArgv(ctx.stack, change).map((argv) => ['pulumi', '--cwd', ctx.projectDir, ...argv.slice(1)]),
    ...(plan.restartBackend ? { up: pulumiUpArgv(ctx.projectDir, ctx.stack) } : {}),
  };
}

async function defaultVerify(ctx: StackContext, to: Topology, creds: ProbeCredentials, plan: RollbackPlan, warnings: string[]): Promise<string> {
  const report = await runHealth(withTopology(ctx, to), creds, { skipProbe: creds.adminToken === undefined });
  const bad = report.checks.filter((c) => !c.ok && !(plan.desyncRisk && c.name.startsWith('delivery probe')));
  if (bad.length > 0) throw new ReplyxError('RPX_ROLLBACK_VERIFY', bad.map((c) => `${c.name}: ${c.detail}`).join('; '), 'the previous state is being restored; docker logs the failing container');
  if (creds.adminToken === undefined) warnings.push('no REPLYX_ADMIN_TOKEN: verified /health only, not the /ws/ route or delivery');
  return `${report.checks.length} health checks ok`;
}

/** Rolls a docker stack to the stack file text `toText`; restores the previous config on failure. */
export async function applyDockerChange(ctx: StackContext, d: RunningDockerStack, toText: string, change: RollbackChange | 'undo', steps: StepRunner, options: ApplyOptions): Promise<ApplyOutcome> {
  const warnings: string[] = [];
  const to = topologyFromStackText(toText, path.basename(ctx.stackFile)).topology;
  const plan = planRollback(stateOf(ctx.topology), stateOf(to));
  const undoChange: RollbackChange = { wsRoute: to.wsRoute, backendWorkers: to.backend.workers };
  const cmds = dockerRollbackCommands(ctx, d, to, plan, change === 'undo' ? undoChange : change);
  let oldConfig = '';
  await steps.run('record', async () => {
    try {
      oldConfig = await readFile(d.hostConfigFile, 'utf8');
    } catch (err) {
      throw new ReplyxError('RPX_ROLLBACK_NO_CONFIG', `cannot read ${d.hostConfigFile}: ${(err as Error).message}`, 'run this on the Docker host after pulumi up (or set replyx-docker:stateDir)');
    }
    return `now wsRoute=${ctx.topology.wsRoute}, backend workers=${ctx.topology.backend.workers}; target wsRoute=${to.wsRoute}, workers=${to.backend.workers}`;
  });
  const next = `${d.hostConfigFile}.next`;
  const swapIn = async (text: string) => {
    await writeFile(next, text);
    try {
      await runChecked(options.run, cmds.validate, 'RPX_NGINX_CONFIG_INVALID', 'fix the topology or template; nothing was changed');
    } catch (err) {
      await rm(next, { force: true });
      throw err;
    }
  };
  let text = '';
  await steps.run('render', async () => {
    text = renderNginxConfig(to, 'docker');
    if (options.transformConfig) text = options.transformConfig(text);
    return `nginx config for wsRoute=${to.wsRoute}`;
  });
  await steps.run('validate', async () => {
    await swapIn(text);
    return cmds.validate.join(' ');
  });
  let swapped = false;
  try {
    await steps.run('swap', async () => {
      await writeAtomic(d.hostConfigFile, text);
      await rm(next, { force: true });
      swapped = true;
      return `${d.hostConfigFile} replaced (temp file + rename)`;
    });
    await steps.run('reload', async () => (await runChecked(options.run, cmds.reload, 'RPX_ROLLBACK_RELOAD', `docker logs ${d.containers.nginx}`), cmds.reload.join(' ')));
    if (cmds.drain) await steps.run('drain', async () => (await runChecked(options.run, cmds.drain!, 'RPX_ROLLBACK_DRAIN', `docker logs ${cmds.drain!.at(-1)!}`), cmds.drain!.join(' ')));
    if (cmds.up) {
      // The container env comes from Pulumi: set the config first, then let `pulumi up` recreate the backend.
      await steps.run('restart backend', async () => {
        for (const argv of cmds.configSet) await runChecked(options.run, argv, 'RPX_ROLLBACK_CONFIG', 'check pulumi login and that the stack exists (pulumi stack ls)');
        await runChecked(options.run, cmds.up!, 'RPX_ROLLBACK_PULUMI_UP', 'read the pulumi output; then npm run rollback -- --undo --target docker');
        return cmds.up!.join(' ');
      });
    }
    await steps.run('verify', () => (options.verify ? options.verify(to) : defaultVerify(ctx, to, options.creds, plan, warnings)));
  } catch (err) {
    if (!swapped) throw err;
    options.print('  verification failed; restoring the previous nginx config');
    await steps.run('restore', async () => {
      await writeAtomic(d.hostConfigFile, oldConfig);
      await runChecked(options.run, cmds.reload, 'RPX_ROLLBACK_RESTORE_FAILED', `${cmds.reload.join(' ')} by hand`);
      return 'previous config back and reloaded';
    });
    throw new ReplyxError('RPX_ROLLBACK_VERIFY_FAILED', `rollback failed and was undone: ${(err as Error).message}`, 'the previous nginx config is running again and the stack file is unchanged; read the logs, then npm run check -- --target docker', { cause: err });
  }
  await steps.run('persist', async () => {
    if (cmds.up && change !== 'undo') return 'stack config already set before pulumi up';
    return persistStackChange(ctx, toText, change, options.run, warnings, options.hasPulumi);
  });
  return { warnings };
}
