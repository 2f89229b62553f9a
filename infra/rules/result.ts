// The shape every architecture rule reports, static or live, so the check script, the Pulumi
// program and the policy pack print and decide on the same thing.

/** pass: holds; fail: broken; warn: holds but close to the limit; skip: could not be evaluated. */
export type RuleStatus = 'pass' | 'fail' | 'warn' | 'skip';

/** The outcome of one rule. `fix` says what to do when the status is not pass. */
export interface RuleResult {
  readonly id: string;
  readonly kind: 'static' | 'live';
  readonly status: RuleStatus;
  readonly detail: string;
  readonly fix: string;
}

/** A rule's metadata: what it guards and whether a failure must stop a deploy. */
export interface RuleInfo {
  readonly id: string;
  readonly title: string;
  /**
   * False for states an operator may choose on purpose for a while (rollback to the backend's
   * WebSockets): the check fails loudly, but `pulumi up` only warns so a rollback persists.
   */
  readonly blocksDeploy: boolean;
}

/** Builds a result; `fix` is kept empty for a pass so tables stay short. */
export function result(kind: RuleResult['kind'], id: string, status: RuleStatus, detail: string, fix = ''): RuleResult {
  return { id, kind, status, detail, fix: status === 'pass' ? '' : fix };
}

/** True when no result failed (warnings and skips do not fail a check). */
export function allPassed(results: readonly RuleResult[]): boolean {
  return results.every((r) => r.status !== 'fail');
}
