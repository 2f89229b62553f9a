import path from 'node:path';
import { credentialsFromEnv } from '../../operate/live-state.js';
import { describeSteps, pulumiUpArgv, type RollbackChange, type RollbackPlan } from '../../operate/rollback/plan.js';
import type { StackContext, StackFile } from '../../operate/stack.js';
import type { StepRunner } from '../../operate/steps.js';
import { loopbackEndpoints, type ApplyOptions, type ApplyOutcome, type TargetDescription, type TargetObservation, type TargetSurface } from '../../operate/surface.js';
import type { CommandRunner } from '../../processes/run.js';
import { renderNginxConfig } from '../../render/nginx.js';
import { dockerContainerNames } from '../../render/service-hosts.js';
import type { Probe } from '../../rules/index.js';
import { parseStackFile, topologyFromStackText, type Topology } from '../../topology/index.js';
import { planDockerStack } from './plan.js';
import { applyDockerChange, dockerRollbackCommands, type RunningDockerStack } from './rollback.js';

// The docker target's surface: the stack's containers on this Docker host, asked through the
// docker CLI (argv arrays) and reached on the ports the topology publishes.

/** Lines of nginx's log the check reads for /ws/ tokens. */
const ACCESS_LOG_LINES = 2000;

async function fromRun(run: CommandRunner, argv: readonly string[]): Promise<Probe<string>> {
  try {
    const r = await run(argv);
    return r.exitCode === 0 ? { ok: true, value: r.stdout } : { ok: false, error: `${argv.slice(0, 3).join(' ')}: exit ${r.exitCode} ${(r.stderr || r.stdout).trim().split('\n').pop() ?? ''}` };
  } catch (err) {
    return { ok: false, error: (err as Error).message };
  }
}

/** The surface of a docker stack described by a stack file. */
export function dockerSurface(file: StackFile): TargetSurface {
  const t = file.fileTopology;
  // The docker target keeps its nginx config where `replyx-docker:stateDir` says (default .stack/docker/nginx).
  const configured = parseStackFile(file.stackText, path.basename(file.stackFile))['replyx-docker:stateDir'];
  const plan = planDockerStack(t, { projectRoot: file.projectDir, ...(typeof configured === 'string' ? { stateDir: configured } : {}) });
  const containers = dockerContainerNames(t);
  const running: RunningDockerStack = { containers, hostConfigFile: plan.nginxConfig.hostFile, containerConfigFile: plan.nginxConfig.containerFile };
  const description: TargetDescription = {
    endpoints: loopbackEndpoints(t),
    displayNames: containers,
    stateDir: path.join(file.projectDir, '.stack'),
  };
  const context = (): StackContext => ({ target: 'docker', stack: file.stack, projectDir: file.projectDir, stackFile: file.stackFile, stackText: file.stackText, topology: t, endpoints: description.endpoints, surface });
  const surface: TargetSurface = {
    target: 'docker',
    topology: t,
    describe: () => description,
    topologyOf: (text: string): Topology => topologyFromStackText(text, path.basename(file.stackFile)).topology,
    renderNginx: (topology: Topology) => renderNginxConfig(topology, 'docker'),
    credentials: async (env = process.env) => credentialsFromEnv(env),
    async observe(run: CommandRunner): Promise<TargetObservation> {
      const config = await fromRun(run, ['docker', 'exec', containers.nginx, 'cat', running.containerConfigFile]);
      const redis = await fromRun(run, ['docker', 'exec', containers.redis, 'redis-cli', '-p', String(t.redis.port), 'ping']);
      const postgres = await fromRun(run, ['docker', 'exec', containers.postgres, 'pg_isready', '-h', '127.0.0.1', '-p', String(t.postgres.port), '-U', t.postgres.user, '-d', t.postgres.database]);
      const logs = await fromRun(run, ['docker', 'logs', '--tail', String(ACCESS_LOG_LINES), containers.nginx]);
      return {
        runningConfig: config.ok ? { ok: true, value: { text: config.value, source: `${containers.nginx}:${running.containerConfigFile}` } } : config,
        redis: redis.ok ? (redis.value.trim() === 'PONG' ? { ok: true, value: true } : { ok: false, error: `PING answered ${redis.value.trim()}` }) : redis,
        postgres: postgres.ok ? { ok: true, value: true } : postgres,
        logs: logs.ok ? { ok: true, value: [{ file: `docker logs ${containers.nginx}`, lines: logs.value.split('\n').filter((l) => l.length > 0) }] } : logs,
      };
    },
    upCommand: () => pulumiUpArgv(file.projectDir, file.stack),
    dryRun(rollback: RollbackPlan, change: RollbackChange | 'undo', toText: string): readonly string[] {
      const to = surface.topologyOf(toText);
      const cmds = dockerRollbackCommands(file, running, to, rollback, change === 'undo' ? { wsRoute: rollback.to.wsRoute, backendWorkers: rollback.to.backendWorkers } : change);
      // The docker target sets the config and runs one `pulumi up` after the route moved: its backend restart comes after the drain.
      const steps = rollback.workersFirst ? [...rollback.steps.filter((st) => st !== 'restart backend' && st !== 'verify' && st !== 'persist'), 'restart backend' as const, 'verify' as const, 'persist' as const] : rollback.steps;
      return describeSteps(steps, {
        record: 'read the running nginx config and service state',
        render: `render nginx config for wsRoute=${rollback.to.wsRoute}`,
        validate: cmds.validate.join(' '),
        swap: 'rename nginx.conf.next over nginx.conf',
        reload: cmds.reload.join(' '),
        ...(cmds.drain ? { drain: cmds.drain.join(' ') } : {}),
        ...(cmds.up ? { 'restart backend': [...cmds.configSet.map((a) => a.join(' ')), cmds.up.join(' ')].join(' && ') } : {}),
        verify: 'health of every service, /ws/ answered by the new route, backend worker count, delivery probe',
        persist: change === 'undo' ? `restore ${path.basename(file.stackFile)} byte for byte` : `set the stack config (${path.basename(file.stackFile)})`,
      });
    },
    applyChange: (toText: string, change: RollbackChange | 'undo', steps: StepRunner, options: ApplyOptions): Promise<ApplyOutcome> => applyDockerChange(context(), running, toText, change, steps, options),
  };
  return surface;
}
