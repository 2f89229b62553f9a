import { ruleById, type FixContext, type RuleId, type RuleReads, type RuleSubject } from './catalog.js';

// The shape every architecture rule reports, static or live, so the check script, the Pulumi
// program and the policy pack print and decide on the same thing.

/** pass: holds; fail: broken; warn: holds but close to the limit; skip: could not be evaluated. */
export type RuleStatus = 'pass' | 'fail' | 'warn' | 'skip';

/** The outcome of one rule. `fix` says what to do when the status is not pass. */
export interface RuleResult {
  readonly id: RuleId;
  readonly kind: 'static' | 'live';
  /**
   * What this row judged: the stack file, the config rendered from it, or the running system. A
   * rule that reads an nginx config has two rows, one per config (rendered and running).
   */
  readonly against: Exclude<RuleSubject, 'declared'>;
  readonly status: RuleStatus;
  readonly detail: string;
  readonly fix: string;
}

const SUBJECT_OF_READS = { topology: 'stack-file', 'nginx-config': 'rendered', live: 'running' } as const satisfies Record<RuleReads, RuleResult['against']>;

/** What a row of a rule is judged against unless it says otherwise: what the rule reads. */
function defaultSubject(id: RuleId): RuleResult['against'] {
  return SUBJECT_OF_READS[ruleById(id).reads];
}

/**
 * Builds a result for a rule of the table: a failure or warning carries the rule's fix (or
 * `fix` when the failure has another cause, like a config that does not parse); a pass or a
 * skip carries none, so tables stay short.
 */
export function result(id: RuleId, status: RuleStatus, detail: string, ctx: FixContext, fix?: string, against: RuleResult['against'] = defaultSubject(id)): RuleResult {
  const rule = ruleById(id);
  if (rule.kind === 'topology') throw new Error(`rule ${id} is checked by topology validation, not reported as a check row`);
  const needsFix = status === 'fail' || status === 'warn';
  return { id, kind: rule.kind, against, status, detail, fix: needsFix ? (fix ?? rule.fix(ctx)) : '' };
}

/** True when no result failed (warnings and skips do not fail a check). */
export function allPassed(results: readonly RuleResult[]): boolean {
  return results.every((r) => r.status !== 'fail');
}
