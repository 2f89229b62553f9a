import { isMap, parseDocument } from 'yaml';
import { ReplyxError } from '../../errors.js';
import { desyncRisk } from '../../rules/topology-rules.js';
import { CONFIG_NAMESPACE, topologyFromStackText, type Topology, type WsRoute } from '../../topology/index.js';

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
  const steps: RollbackStepName[] = ['record', 'render', 'validate', 'swap', 'reload'];
  if (drain) steps.push('drain');
  if (workersChange) steps.push('restart backend');
  steps.push('verify', 'persist');
  return { from, to, steps, ...(drain ? { drain } : {}), restartBackend: workersChange, desyncRisk: desyncRisk(to.wsRoute, to.backendWorkers) };
}

/** Applies a change to a state. */
export function applyChange(from: RollbackState, change: RollbackChange): RollbackState {
  return { wsRoute: change.wsRoute ?? from.wsRoute, backendWorkers: change.backendWorkers ?? from.backendWorkers };
}

/**
 * Edits a stack file's text for a change with the yaml Document API, so comments, key order and
 * other keys stay as they were; validates the result and throws if the file cannot hold it.
 */
export function editStackText(text: string, change: RollbackChange, source = 'stack file'): string {
  const doc = parseDocument(text);
  if (doc.errors.length > 0) throw new ReplyxError('RPX_STACK_FILE_YAML', `${source}: ${doc.errors[0]!.message.split('\n')[0]}`, 'fix the YAML syntax at the line named');
  if (change.wsRoute !== undefined) doc.setIn(['config', `${CONFIG_NAMESPACE}:wsRoute`], change.wsRoute);
  if (change.backendWorkers !== undefined) {
    const backend = doc.getIn(['config', `${CONFIG_NAMESPACE}:backend`], true);
    if (backend !== undefined && !isMap(backend)) {
      throw new ReplyxError('RPX_STACK_FILE_YAML', `${source}: replyx:backend is not a mapping`, 'make replyx:backend a mapping (workers: N)');
    }
    doc.setIn(['config', `${CONFIG_NAMESPACE}:backend`, 'workers'], change.backendWorkers);
  }
  const out = doc.toString();
  topologyFromStackText(out, source);
  return out;
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
