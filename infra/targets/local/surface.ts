import path from 'node:path';
import { demoVisitorKey, PROBE_DIALOG_ID, signAdminToken } from '../../../examples/backend/src/demo.js';
import type { ProbeCredentials } from '../../operate/live-state.js';
import { describeSteps, type RollbackChange, type RollbackPlan } from '../../operate/rollback/plan.js';
import { REPO_DIR, type StackContext, type StackFile } from '../../operate/stack.js';
import type { StepRunner } from '../../operate/steps.js';
import { loopbackEndpoints, type ApplyOptions, type ApplyOutcome, type TargetDescription, type TargetObservation, type TargetSurface } from '../../operate/surface.js';
import { renderNginxConfig } from '../../render/nginx.js';
import type { Topology } from '../../topology/index.js';
import { readStateFile } from './local-stack.js';
import { observeLocalStack } from './observe.js';
import { planLocalStackForNginx } from './nginx-limit.js';
import { applyLocalChange, localPlanFor, type RunningLocalStack } from './rollback.js';
import { readLocalSecrets } from './secrets.js';

// The local target's surface: a stack of processes on this machine, found through its state
// directory (secrets, the ports `npm start` recorded, pid files, logs).

/** Lifetime of the operator token the local surface signs for its probes. */
const PROBE_TOKEN_TTL_S = 3600;

/** The surface of a local stack started in `stateDir` (throws RPX_STACK_NOT_STARTED when it never was). */
export async function localSurface(file: StackFile, stateDir: string): Promise<TargetSurface> {
  const secrets = await readLocalSecrets(stateDir);
  const recorded = await readStateFile(stateDir);
  const plan = await planLocalStackForNginx(file.fileTopology, { stateDir, repoDir: REPO_DIR, secrets, ...(recorded ? { ports: recorded.ports } : {}) });
  const local: RunningLocalStack = { stateDir, secrets, plan };
  const t = plan.topology;
  const description: TargetDescription = {
    endpoints: loopbackEndpoints(t),
    displayNames: Object.fromEntries(plan.services.map((s) => [s.name, s.displayName])) as TargetDescription['displayNames'],
    stateDir,
  };
  const context = (): StackContext => ({ target: 'local', stack: file.stack, projectDir: file.projectDir, stackFile: file.stackFile, stackText: file.stackText, topology: t, endpoints: description.endpoints, surface });
  const surface: TargetSurface = {
    target: 'local',
    topology: t,
    describe: () => description,
    topologyOf: (text: string): Topology => localPlanFor(local, text, path.basename(file.stackFile)).topology,
    renderNginx: (topology: Topology) => renderNginxConfig(topology, 'local', plan.nginxRender),
    async credentials(): Promise<ProbeCredentials> {
      return { adminToken: await signAdminToken(secrets.jwtSecret, 1, PROBE_TOKEN_TTL_S), debugToken: secrets.debugToken, widgetVisitorKey: demoVisitorKey(secrets.widgetTokenSecret, PROBE_DIALOG_ID), widgetVisitorKeyFor: (dialogId: number) => demoVisitorKey(secrets.widgetTokenSecret, dialogId) };
    },
    observe: (): Promise<TargetObservation> => observeLocalStack(plan, secrets),
    upCommand: () => ['npm', 'start', '--', '--stack', file.stack],
    dryRun(rollback: RollbackPlan, change: RollbackChange | 'undo'): readonly string[] {
      const describe: Record<string, string> = {
        record: 'read the running nginx config and service state',
        render: `render nginx config for wsRoute=${rollback.to.wsRoute}`,
        validate: 'nginx -t on nginx.conf.next',
        swap: 'rename nginx.conf.next over nginx.conf',
        reload: 'SIGHUP to the nginx master (nginx -s reload)',
        drain: rollback.drain === 'gateway' ? 'restart gateway: old process closes its clients with 4200 over DRAIN_WINDOW_MS' : 'end the old nginx workers: legacy /ws/ clients of the backend reconnect through the new route',
        'restart backend': `restart backend with BACKEND_WORKERS=${rollback.to.backendWorkers}`,
        verify: 'health of every service, /ws/ answered by the new route, backend worker count, delivery probe',
        persist: change === 'undo' ? `restore ${path.basename(file.stackFile)} byte for byte` : `set the stack config (${path.basename(file.stackFile)})`,
      };
      return describeSteps(rollback.steps, describe);
    },
    applyChange: (toText: string, change: RollbackChange | 'undo', steps: StepRunner, options: ApplyOptions): Promise<ApplyOutcome> => applyLocalChange(context(), local, toText, change, steps, options),
  };
  return surface;
}
