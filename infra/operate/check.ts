import { allPassed, checkStaticArchitecture, evaluateLiveRules, type RuleResult } from '../rules/index.js';
import { runCommand, type CommandRunner } from '../processes/run.js';
import { collectLiveState, probeCredentials } from './live-state.js';
import type { StackContext } from './stack.js';

// The architecture check of a stack: static rules over its topology and the nginx config its
// target renders, then the live rules over what the running stack answers.

/** The outcome of a check run. */
export interface CheckReport {
  readonly target: string;
  readonly stack: string;
  readonly ok: boolean;
  readonly results: readonly RuleResult[];
}

/** Runs the check on a resolved stack (used by the script, rollback verification and tests). */
export async function runCheck(ctx: StackContext, options: { staticOnly?: boolean; run?: CommandRunner } = {}): Promise<CheckReport> {
  const results: RuleResult[] = checkStaticArchitecture(ctx.topology, ctx.surface.renderNginx(ctx.topology));
  if (!options.staticOnly) {
    const unavailable = ctx.surface.describe().liveUnavailable;
    const live = unavailable !== undefined ? {} : await collectLiveState(ctx, await probeCredentials(ctx), options.run ?? runCommand);
    results.push(...evaluateLiveRules(ctx.topology, live).map((r) => (unavailable !== undefined && r.status === 'skip' ? { ...r, detail: unavailable } : r)));
  }
  return { target: ctx.target, stack: ctx.stack, ok: allPassed(results), results };
}
