import path from 'node:path';
import { ReplyxError } from '../../errors.js';
import { credentialsFromEnv } from '../../operate/live-state.js';
import { writeAtomic } from '../../operate/rollback/history.js';
import type { RollbackChange, RollbackPlan } from '../../operate/rollback/plan.js';
import type { StackFile } from '../../operate/stack.js';
import type { StepRunner } from '../../operate/steps.js';
import { loopbackEndpoints, type ApplyOptions, type ApplyOutcome, type TargetDescription, type TargetSurface } from '../../operate/surface.js';
import { renderNginxConfig } from '../../render/nginx.js';
import { awsServiceDiscoveryNames } from '../../render/service-hosts.js';
import { topologyFromStackText, type Topology } from '../../topology/index.js';
import { awsUpCommand, planAwsRollback, runAwsRollback } from './rollback.js';
import { CONTAINER_NAMES } from './tasks.js';

// The AWS target's surface. Desired state lives in the stack config: a change is `pulumi config
// set` + `pulumi up`, then ECS is asked how each deployment ended (runAwsRollback). The stack
// runs inside a VPC, so only what its public URL answers can be probed from here.

/** Why the live rules are skipped on AWS. */
const LIVE_UNAVAILABLE = 'aws: live rules need the stack inside the VPC; use --static-only and the ECS console';

/** The surface of an AWS stack described by a stack file. */
export function awsSurface(file: StackFile): TargetSurface {
  const t = file.fileTopology;
  const discovery = awsServiceDiscoveryNames(t);
  const description: TargetDescription = {
    endpoints: loopbackEndpoints(t),
    displayNames: { backend: CONTAINER_NAMES.backend, gateway: CONTAINER_NAMES.gateway, nginx: CONTAINER_NAMES.nginx, redis: `${discovery.namespace} ElastiCache`, postgres: `${discovery.namespace} RDS` },
    stateDir: path.join(file.projectDir, '.stack'),
    liveUnavailable: LIVE_UNAVAILABLE,
  };
  const changeOf = (toText: string) => {
    const to = topologyFromStackText(toText, path.basename(file.stackFile)).topology;
    return { ...(to.wsRoute !== t.wsRoute ? { wsRoute: to.wsRoute } : {}), ...(to.backend.workers !== t.backend.workers ? { backendWorkers: to.backend.workers } : {}) };
  };
  return {
    target: 'aws',
    topology: t,
    describe: () => description,
    topologyOf: (text: string): Topology => topologyFromStackText(text, path.basename(file.stackFile)).topology,
    renderNginx: (topology: Topology) => renderNginxConfig(topology, 'aws'),
    credentials: async (env = process.env) => credentialsFromEnv(env),
    // Nothing beyond the public probes is reachable from outside the VPC (see liveUnavailable).
    observe: async () => ({}),
    upCommand: () => awsUpCommand(file.stack, file.projectDir),
    dryRun(rollback: RollbackPlan): readonly string[] {
      const plan = planAwsRollback({ stack: file.stack, projectDir: file.projectDir, wsRoute: rollback.to.wsRoute, backendWorkers: rollback.to.backendWorkers });
      return [...[...plan.configCommands, plan.upCommand, plan.outputsCommand].map((argv) => argv.join(' ')), 'aws ecs describe-services ... until every deployment settles'];
    },
    async applyChange(toText: string, change: RollbackChange | 'undo', steps: StepRunner, options: ApplyOptions): Promise<ApplyOutcome> {
      const result = await runAwsRollback({ stack: file.stack, projectDir: file.projectDir, ...changeOf(toText) }, { run: (argv) => options.run(argv), onStep: (name) => options.print(`  ${name}...`) });
      for (const s of result.steps) steps.records.push({ name: s.name, ok: true, ms: s.ms, detail: s.argv.join(' ') });
      if (!result.ok) throw new ReplyxError('RPX_ROLLBACK_AWS_ROLLOUT', result.services.filter((s) => s.status !== 'completed').map((s) => s.detail).join('; '), result.fix);
      // pulumi config set rewrote the stack file; an undo puts back the exact previous bytes.
      if (change === 'undo') await writeAtomic(file.stackFile, toText);
      return { warnings: [] };
    },
  };
}
