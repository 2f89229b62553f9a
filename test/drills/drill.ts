import { appendFileSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { expect } from 'vitest';
import { REPO_DIR } from '../../infra/operate/stack.js';
import { fencedCommands, runbookFences } from '../../runbooks/fences.js';
import { operatorEnv } from '../operator-stack.js';
import { startReliabilityRun, type FaultResult, type ReliabilityOptions, type ReliabilityRun } from '../reliability/suite.js';

// Incident drills: a fault is injected into a live local stack while contract-following clients
// listen and a publisher posts through nginx; then the on-call side follows a runbook literally
// — its `bash local` fences of a section (and Decision branch), pasted into bash as they are —
// and the drill asserts what the output names and that the stack recovers. Each drill's window
// is scored like a reliability fault (missing, duplicated, reconnected) and its time from fault
// to verified recovery is appended to test-results/drills.jsonl (docs/operations.md lists them).

/** What one pasted command did. */
export interface Step {
  readonly command: string;
  readonly code: number;
  readonly out: string;
  readonly err: string;
}

/** A live stack with traffic, ready for incidents. */
export interface Drill {
  readonly run: ReliabilityRun;
  /** The operator's shell environment for this stack. */
  readonly env: NodeJS.ProcessEnv;
  /** Runs one command the way an operator types it into bash (in the checkout, with `env`). */
  sh(command: string): Promise<Step>;
  /**
   * Runs the `bash local` fences of one runbook section (and Decision branch `tag`: its tagged
   * fences plus the section's untagged ones) in order; every command must exit 0 unless
   * `allowFailure`. Returns each step; `text` is all their output joined, for assertions.
   */
  follow(runbook: string, section: string, opts?: { tag?: string; allowFailure?: boolean }): Promise<{ steps: Step[]; text: string }>;
  /**
   * The `bash local` Action fences of `runbook` no `follow` of this drill ran (by tag, `''` for
   * untagged): a drill file asserts this is empty for the runbooks it owns, so no Action goes
   * unproven.
   */
  unfollowedActions(runbook: string): string[];
  /** Runs an incident under traffic, scores its window and records its time (see file header). */
  incident(label: string, body: () => Promise<void>): Promise<FaultResult>;
  stop(): Promise<void>;
}

/** Sizes of a drill's traffic: small enough for CI, large enough to see a loss. */
export const DRILL_TRAFFIC = { messagesPerFault: 150, ratePerS: 50, adminsPerDialog: 1, leadMs: 1000 } as const;

const RESULTS = path.join(REPO_DIR, 'test-results');

/** The text of `runbooks/<name>.md`. */
export function runbookText(name: string): string {
  return readFileSync(path.join(REPO_DIR, 'runbooks', `${name}.md`), 'utf8');
}

/** Starts a local stack with clients and a publisher for incident drills. */
export async function startDrill(opts: Partial<ReliabilityOptions> = {}): Promise<Drill> {
  mkdirSync(RESULTS, { recursive: true });
  const progress = (line: string) => appendFileSync(path.join(RESULTS, 'drills.log'), `${new Date().toISOString()} ${line}\n`);
  const run = await startReliabilityRun({ ...DRILL_TRAFFIC, log: progress, ...opts });
  const env = operatorEnv(run.stack);
  const sh = async (command: string): Promise<Step> => {
    const r = await execa('bash', ['-c', command], { cwd: REPO_DIR, env, extendEnv: false, timeout: 240_000, maxBuffer: 16 * 1024 * 1024, reject: false, stdin: 'ignore' });
    const step = { command, code: r.exitCode ?? 1, out: r.stdout, err: r.stderr };
    progress(`  $ ${command}  -> ${step.code}`);
    return step;
  };
  const followed = new Set<string>();
  return {
    run,
    env,
    sh,
    unfollowedActions(runbook) {
      const tags = runbookFences(runbookText(runbook))
        .filter((f) => f.kind === 'local' && f.section === 'Action')
        .map((f) => f.tags[0] ?? '');
      return [...new Set(tags)].filter((t) => !followed.has(`${runbook}#Action#${t}`) && !(t === '' && [...followed].some((k) => k.startsWith(`${runbook}#Action#`))));
    },
    async follow(runbook, section, o = {}) {
      followed.add(`${runbook}#${section}#${o.tag ?? ''}`);
      const commands = fencedCommands(runbookText(runbook), { kind: 'local', section, tag: o.tag });
      if (commands.length === 0) throw new Error(`${runbook}.md has no \`bash local\` fence in ## ${section}${o.tag ? ` for branch ${o.tag}` : ''}`);
      const steps: Step[] = [];
      for (const command of commands) {
        const step = await sh(command);
        steps.push(step);
        if (step.code !== 0 && !o.allowFailure) {
          throw new Error(`${runbook}.md ## ${section}: \`${command}\` exited ${step.code}\n${step.out.slice(-1500)}\n${step.err.slice(-1500)}`);
        }
      }
      return { steps, text: steps.map((s) => `$ ${s.command}\n${s.out}\n${s.err}`).join('\n') };
    },
    async incident(label, body) {
      progress(`${label}: start`);
      const result = await run.window(label, body);
      const record = { drill: label, recoveredMs: result.injectMs, messages: result.messages, missing: result.missing, duplicateDeliveries: result.duplicateDeliveries, duplicateRows: result.duplicateRows, reconnected: result.reconnected, closeCodes: result.closeCodes, resyncs: result.resyncs, cutRequests: result.cutRequests };
      appendFileSync(path.join(RESULTS, 'drills.jsonl'), `${JSON.stringify(record)}\n`);
      progress(`${label}: ${JSON.stringify(record)}`);
      return result;
    },
    stop: () => run.stop(),
  };
}

/**
 * Asserts a drill's window lost and repeated nothing: every post accepted and stored once, every
 * delivery once, every client back. `allowMissing` is for an incident whose runbook documents,
 * with a measured figure, what clients miss in it (the hand-routed `/ws/`).
 */
export function expectNothingLost(r: FaultResult, opts: { allowMissing?: boolean } = {}): void {
  const summary = JSON.stringify({ ...r, examples: undefined });
  expect(r.messages, summary).toBeGreaterThan(0);
  const seen = { rejected: r.rejected, missing: opts.allowMissing ? 0 : r.missing, duplicateDeliveries: r.duplicateDeliveries, duplicateRows: r.duplicateRows, unstored: r.unstored, eventIdMismatches: r.eventIdMismatches, allReconnected: r.allReconnected };
  expect(seen, `${summary}\n${r.examples.join('\n')}`).toEqual({ rejected: 0, missing: 0, duplicateDeliveries: 0, duplicateRows: 0, unstored: 0, eventIdMismatches: 0, allReconnected: true });
}
