import { allPassed, checkStaticArchitecture, evaluateLiveRules, evaluateRunningConfigRules, rulesReading, type FixContext, type RuleResult } from '../rules/index.js';
import { runCommand, type CommandRunner } from '../processes/run.js';
import { collectLiveState, probeCredentials } from './live-state.js';
import type { StackContext } from './stack.js';

// The architecture check of a stack: static rules over its topology and the nginx config its
// target renders; the same nginx rules over the config the running nginx loaded; then the live
// rules over what the running stack answers. Every row says what it was judged against.

/** The outcome of a check run. */
export interface CheckReport {
  readonly target: string;
  readonly stack: string;
  readonly ok: boolean;
  readonly results: readonly RuleResult[];
}

/** Options of {@link runCheck}. */
export interface CheckOptions {
  readonly staticOnly?: boolean;
  readonly run?: CommandRunner;
  /** Flags besides `--stack` that select the stack (`--project-dir`, `--state-dir`), repeated in every printed fix. */
  readonly selector?: readonly string[];
}

/** Runs the check on a resolved stack (used by the script, rollback verification and tests). */
export async function runCheck(ctx: StackContext, options: CheckOptions = {}): Promise<CheckReport> {
  const fixContext: Omit<FixContext, 'topology'> = { stack: ctx.stack, ...(options.selector && options.selector.length > 0 ? { selector: options.selector } : {}) };
  const rendered = ctx.surface.renderNginx(ctx.topology);
  const results: RuleResult[] = checkStaticArchitecture(ctx.topology, rendered, fixContext);
  if (!options.staticOnly) {
    const unavailable = ctx.surface.describe().liveUnavailable;
    const live = unavailable !== undefined ? {} : await collectLiveState(ctx, await probeCredentials(ctx), options.run ?? runCommand);
    const renderedNginx = results.filter((r) => rulesReading('nginx-config').some((rule) => rule.id === r.id));
    const runningNginx =
      live.runningConfig === undefined
        ? []
        : evaluateRunningConfigRules(ctx.topology, live.runningConfig.ok ? live.runningConfig.value : { error: live.runningConfig.error }, renderedNginx, fixContext);
    results.push(...runningNginx);
    results.push(
      ...evaluateLiveRules(ctx.topology, { ...live, renderedConfig: rendered }, { ...fixContext, runningNginx }).map((r) =>
        unavailable !== undefined && r.status === 'skip' ? { ...r, detail: unavailable } : r,
      ),
    );
  }
  return { target: ctx.target, stack: ctx.stack, ok: allPassed(results), results };
}

/** The operator commands in a printed fix (`npm run stack -- …`, `npm run rollback -- …`, `pulumi up …`), each as argv. */
export function fixCommands(fix: string): string[][] {
  return (fix.match(/(?:npm run [a-z-]+ --|pulumi up)(?: [^\s()]+)*/g) ?? []).map((c) => c.split(' '));
}
