import { ruleById, type FixContext, type RuleId } from './catalog.js';

// The shape every architecture rule reports, static or live, so the check script, the Pulumi
// program and the policy pack print and decide on the same thing.

/** pass: holds; fail: broken; warn: holds but close to the limit; skip: could not be evaluated. */
export type RuleStatus = 'pass' | 'fail' | 'warn' | 'skip';

/** The outcome of one rule. `fix` says what to do when the status is not pass. */
export interface RuleResult {
  readonly id: RuleId;
  readonly kind: 'static' | 'live';
  readonly status: RuleStatus;
  readonly detail: string;
  readonly fix: string;
}

/**
 * Builds a result for a rule of the table: a failure or warning carries the rule's fix (or
 * `fix` when the failure has another cause, like a config that does not parse); a pass or a
 * skip carries none, so tables stay short.
 */
export function result(id: RuleId, status: RuleStatus, detail: string, ctx: FixContext, fix?: string): RuleResult {
  const rule = ruleById(id);
  if (rule.kind === 'topology') throw new Error(`rule ${id} is checked by topology validation, not reported as a check row`);
  const needsFix = status === 'fail' || status === 'warn';
  return { id, kind: rule.kind, status, detail, fix: needsFix ? (fix ?? rule.fix(ctx)) : '' };
}

/** True when no result failed (warnings and skips do not fail a check). */
export function allPassed(results: readonly RuleResult[]): boolean {
  return results.every((r) => r.status !== 'fail');
}
