import type { LiveState } from '../rules/index.js';
import type { CommandRunner } from '../processes/run.js';
import type { ServiceName, Target, Topology } from '../topology/index.js';
import type { ProbeCredentials } from './live-state.js';
import type { RollbackChange, RollbackPlan } from './rollback/plan.js';
import type { StepRunner } from './steps.js';

// What every target offers the operator commands. The scripts (check, health, rollback) and the
// target-independent logic in infra/operate only talk to a stack through this: a new target
// (Kubernetes, say) implements it in its own folder and every command works on it.

/** Endpoints of a running stack as seen from this machine. */
export interface StackEndpoints {
  readonly nginx: string;
  readonly backend: string;
  readonly gateway: string;
  readonly ws: string;
}

/** The endpoints of a stack whose services publish their topology ports on this machine. */
export function loopbackEndpoints(topology: Pick<Topology, 'nginx' | 'backend' | 'gateway'>): StackEndpoints {
  return {
    nginx: `http://127.0.0.1:${topology.nginx.port}`,
    backend: `http://127.0.0.1:${topology.backend.port}`,
    gateway: `http://127.0.0.1:${topology.gateway.port}`,
    ws: `ws://127.0.0.1:${topology.nginx.port}`,
  };
}

/** Where a stack answers and what its pieces are called, for probes, status lines and fixes. */
export interface TargetDescription {
  readonly endpoints: StackEndpoints;
  /** What each service is called where it runs (`replyx-ws-gateway`, …). */
  readonly displayNames: Readonly<Record<ServiceName, string>>;
  /** Directory of operator state on this machine (the rollback history). */
  readonly stateDir: string;
  /** Set when the running stack cannot be observed from this machine: why, for the skipped live rules. */
  readonly liveUnavailable?: string;
}

/** Live observations only the target can make; the HTTP and WebSocket probes are common. */
export type TargetObservation = Pick<LiveState, 'runningConfig' | 'processes' | 'settings' | 'redis' | 'postgres' | 'logs' | 'knownSecrets'>;

/** Options of {@link TargetSurface.applyChange}. */
export interface ApplyOptions {
  readonly run: CommandRunner;
  readonly creds: ProbeCredentials;
  readonly print: (line: string) => void;
  /** Changes the rendered nginx config before it is validated (tests inject broken configs). */
  readonly transformConfig?: (text: string) => string;
  /** Replaces the target's verification (tests of the docker target have no daemon behind the ports). */
  readonly verify?: (to: Topology) => Promise<string>;
  /** Whether the Pulumi CLI is on PATH (default: looked up). */
  readonly hasPulumi?: boolean;
}

/** What applying a change did. */
export interface ApplyOutcome {
  readonly warnings: readonly string[];
  /** Milliseconds from the start until verification passed, where the target measures it. */
  readonly verifiedMs?: number;
}

/** One target's operations. */
export interface TargetSurface {
  readonly target: Target;
  /** The topology the stack runs now (local: on the ports `npm start` recorded). */
  readonly topology: Topology;
  /** Endpoints and names of the running stack. */
  describe(): TargetDescription;
  /** The topology a stack file text gives on this target (the target state of a change). */
  topologyOf(stackText: string): Topology;
  /** The nginx config this target renders for `topology`. */
  renderNginx(topology: Topology): string;
  /** Credentials the probes use: the local stack's own secrets, else REPLYX_ADMIN_TOKEN / REPLYX_DEBUG_TOKEN. */
  credentials(env?: NodeJS.ProcessEnv): Promise<ProbeCredentials>;
  /** The live state only this target can see (running nginx config, processes, loaded settings, Redis, Postgres, logs). */
  observe(run: CommandRunner): Promise<TargetObservation>;
  /** The command that brings the running stack to its stack file (`npm start`, `pulumi up`). */
  upCommand(): readonly string[];
  /** What {@link applyChange} would do, one line per step (`--dry-run`). */
  dryRun(plan: RollbackPlan, change: RollbackChange | 'undo', toText: string): readonly string[];
  /**
   * Applies a change of the stack file (its new text) live: validates and swaps the nginx config,
   * drains, restarts, verifies, and persists it; a failed verification restores the previous state.
   */
  applyChange(toText: string, change: RollbackChange | 'undo', steps: StepRunner, options: ApplyOptions): Promise<ApplyOutcome>;
}
