import { ReplyxError } from '../../errors.js';
import { desyncRisk } from '../../rules/topology-rules.js';
import { editStackSettings, type StackSetting } from '../../topology/edit.js';
import { CONFIG_NAMESPACE, type Topology, type WsRoute } from '../../topology/index.js';

// The pure half of `npm run rollback`: what changes, which steps that takes, and the edited
// stack file text (comments kept), so every decision is unit-tested without processes.

/** What a rollback sets; unset fields keep their value. */
export interface RollbackChange {
  readonly wsRoute?: WsRoute;
  readonly backendWorkers?: number;
}

/** The two knobs a rollback moves, as they are in a topology. */
export interface RollbackState {
  readonly wsRoute: WsRoute;
  readonly backendWorkers: number;
}

/** The step names of a rollback, in order. */
export type RollbackStepName = 'record' | 'render' | 'validate' | 'swap' | 'reload' | 'drain' | 'restart backend' | 'verify' | 'persist';

/** What a rollback will do. */
export interface RollbackPlan {
  readonly from: RollbackState;
  readonly to: RollbackState;
  readonly steps: readonly RollbackStepName[];
  /** Who served /ws/ before and must drop its clients (4200 from the gateway, 1001 from the backend). */
  readonly drain?: WsRoute;
  readonly restartBackend: boolean;
  /** The backend restarts with its new worker count before nginx moves /ws/ to it. */
  readonly workersFirst: boolean;
  /** The target state runs /ws/ on a multi-worker backend: the probe may miss messages by design. */
  readonly desyncRisk: boolean;
}

/** The rollback knobs of a topology. */
export function stateOf(t: Topology): RollbackState {
  return { wsRoute: t.wsRoute, backendWorkers: t.backend.workers };
}

/** Plans the steps from one state to another (pure). */
export function planRollback(from: RollbackState, to: RollbackState): RollbackPlan {
  const routeChanges = from.wsRoute !== to.wsRoute;
  const workersChange = from.backendWorkers !== to.backendWorkers;
  // The backend restart for new workers also drops its legacy /ws/ clients: one restart, not two.
  const drain: WsRoute | undefined = routeChanges && !(from.wsRoute === 'backend' && workersChange) ? from.wsRoute : undefined;
  // Never pass through /ws/ on a multi-worker backend (the desync): towards the backend the
  // worker count changes before the route, away from it the route changes first.
  const workersFirst = workersChange && routeChanges && to.wsRoute === 'backend';
  const steps: RollbackStepName[] = ['record'];
  if (workersFirst) steps.push('restart backend');
  steps.push('render', 'validate', 'swap', 'reload');
  if (drain) steps.push('drain');
  if (workersChange && !workersFirst) steps.push('restart backend');
  steps.push('verify', 'persist');
  return { from, to, steps, ...(drain ? { drain } : {}), restartBackend: workersChange, workersFirst, desyncRisk: desyncRisk(to.wsRoute, to.backendWorkers) };
}

/** Applies a change to a state. */
export function applyChange(from: RollbackState, change: RollbackChange): RollbackState {
  return { wsRoute: change.wsRoute ?? from.wsRoute, backendWorkers: change.backendWorkers ?? from.backendWorkers };
}

/**
 * Edits a stack file's text for a change (comments, key order and other keys kept); validates
 * the result and throws if the file cannot hold it.
 */
export function editStackText(text: string, change: RollbackChange, source = 'stack file'): string {
  const settings: StackSetting[] = [];
  // Workers first: the order rollback applies them in, and so the order the file records them.
  if (change.backendWorkers !== undefined) settings.push({ key: 'backend.workers', value: change.backendWorkers });
  if (change.wsRoute !== undefined) settings.push({ key: 'wsRoute', value: change.wsRoute });
  return editStackSettings(text, settings, source);
}

/** The `pulumi config set` argv arrays for a change (run from the project directory). */
export function pulumiConfigSetArgv(stack: string, change: RollbackChange): string[][] {
  const out: string[][] = [];
  if (change.wsRoute !== undefined) out.push(['pulumi', 'config', 'set', '--stack', stack, `${CONFIG_NAMESPACE}:wsRoute`, '--', change.wsRoute]);
  if (change.backendWorkers !== undefined) out.push(['pulumi', 'config', 'set', '--stack', stack, '--path', `${CONFIG_NAMESPACE}:backend.workers`, '--', String(change.backendWorkers)]);
  return out;
}

/** The `pulumi up` argv that applies a stack's config to a Pulumi-managed target. */
export function pulumiUpArgv(projectDir: string, stack: string): string[] {
  return ['pulumi', '--cwd', projectDir, 'up', '--stack', stack, '--yes', '--non-interactive'];
}

/** Validates the flags of a rollback and returns the change (throws RPX_USAGE). */
export function changeFromFlags(flags: { wsTo?: string; backendWorkers?: number; undo?: boolean }): RollbackChange | 'undo' {
  const fix = 'run npm run rollback -- --help';
  if (flags.undo) {
    if (flags.wsTo !== undefined || flags.backendWorkers !== undefined) throw new ReplyxError('RPX_USAGE', '--undo cannot be combined with --ws-to or --backend-workers', fix);
    return 'undo';
  }
  if (flags.wsTo !== undefined && flags.wsTo !== 'backend' && flags.wsTo !== 'gateway') throw new ReplyxError('RPX_USAGE', `--ws-to must be backend or gateway, got "${flags.wsTo}"`, fix);
  if (flags.wsTo === undefined && flags.backendWorkers === undefined) throw new ReplyxError('RPX_USAGE', 'nothing to do: pass --ws-to backend|gateway, --backend-workers N, or --undo', fix);
  return { ...(flags.wsTo !== undefined ? { wsRoute: flags.wsTo as WsRoute } : {}), ...(flags.backendWorkers !== undefined ? { backendWorkers: flags.backendWorkers } : {}) };
}

/** The numbered lines of a dry run: each step with what it will do. */
export function describeSteps(steps: readonly RollbackStepName[], describe: Readonly<Partial<Record<RollbackStepName, string>>>): string[] {
  return steps.map((s, i) => `${String(i + 1).padStart(2)}. ${s.padEnd(16)} ${describe[s] ?? ''}`);
}
