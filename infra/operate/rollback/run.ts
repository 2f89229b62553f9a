import path from 'node:path';
import { ReplyxError } from '../../errors.js';
import { runCommand, type CommandRunner } from '../../processes/run.js';
import { seconds } from '../cli.js';
import { probeCredentials } from '../live-state.js';
import type { StackContext } from '../stack.js';
import { StepRunner, type StepRecord } from '../steps.js';
import type { ApplyOptions } from '../surface.js';
import { historyFile, lastEntry, popHistory, pushHistory, readHistory, type HistoryEntry } from './history.js';
import { editStackText, planRollback, stateOf, type RollbackChange, type RollbackPlan, type RollbackState } from './plan.js';

// `npm run rollback` without the command line: work out the target stack file text (the edit,
// or the text before the last rollback for --undo), let the target apply it, record it in the
// history. Every target-specific step is the target surface's applyChange.

/** What a rollback run reports (--json). */
export interface RollbackReport {
  readonly ok: boolean;
  readonly target: string;
  readonly stack: string;
  readonly undo: boolean;
  readonly from: RollbackState;
  readonly to: RollbackState;
  readonly steps: readonly StepRecord[];
  readonly totalMs: number;
  /** Milliseconds until verification passed, where the target measures it (the rest is persisting). */
  readonly verifiedMs?: number;
  readonly warnings: readonly string[];
}

/** Options for running a rollback in-process (tests). */
export interface RollbackRunOptions {
  readonly print?: (line: string) => void;
  readonly run?: CommandRunner;
  readonly transformConfig?: ApplyOptions['transformConfig'];
  /** Replaces the target's verification (docker unit tests have no daemon). */
  readonly dockerVerify?: ApplyOptions['verify'];
  /** Whether the Pulumi CLI is available (default: looked up on PATH). */
  readonly hasPulumi?: boolean;
}

/** One line for a rollback state. */
export function describeState(s: RollbackState): string {
  return `wsRoute=${s.wsRoute}, backend workers=${s.backendWorkers}`;
}

function historyPath(ctx: StackContext): string {
  return historyFile(ctx.surface.describe().stateDir);
}

/** Works out the target stack file text: the edited text, or the text before the last rollback for --undo. */
export async function targetText(ctx: StackContext, change: RollbackChange | 'undo'): Promise<{ text: string; entry?: HistoryEntry }> {
  if (change !== 'undo') return { text: editStackText(ctx.stackText, change, path.basename(ctx.stackFile)) };
  const file = historyPath(ctx);
  const entry = lastEntry(await readHistory(file), ctx.stack, file);
  if (entry.after.text !== ctx.stackText) {
    throw new ReplyxError('RPX_ROLLBACK_UNDO_CONFLICT', `${path.basename(ctx.stackFile)} changed after the rollback of ${entry.at}; undo would discard that edit`, `restore it by hand (the previous text is in ${file}) or roll forward with --ws-to/--backend-workers`);
  }
  return { text: entry.before.text, entry };
}

/** The plan of a rollback and the lines `--dry-run` prints; changes nothing. */
export async function planRollbackRun(ctx: StackContext, change: RollbackChange | 'undo'): Promise<{ plan: RollbackPlan; lines: readonly string[] }> {
  const { text } = await targetText(ctx, change);
  const plan = planRollback(stateOf(ctx.topology), stateOf(ctx.surface.topologyOf(text)));
  if (text === ctx.stackText) return { plan, lines: [`nothing to change: stack ${ctx.stack} already has ${describeState(plan.from)}`] };
  const head = `plan for stack ${ctx.stack} (target ${ctx.target}): ${describeState(plan.from)} -> ${describeState(plan.to)}${plan.desyncRisk ? '  (desync risk: /ws/ on a multi-worker backend)' : ''}`;
  return { plan, lines: [head, ...ctx.surface.dryRun(plan, change, text).map((l) => `  ${l}`)] };
}

/** Runs a rollback on a resolved stack; throws a ReplyxError when it fails (after restoring). */
export async function runRollback(ctx: StackContext, change: RollbackChange | 'undo', options: RollbackRunOptions = {}): Promise<RollbackReport> {
  const print = options.print ?? ((l: string) => console.log(l));
  const { text: toText } = await targetText(ctx, change);
  const from = stateOf(ctx.topology);
  const to = stateOf(ctx.surface.topologyOf(toText));
  const steps = new StepRunner(print);
  const base = { target: ctx.target, stack: ctx.stack, undo: change === 'undo', from, to };
  if (toText === ctx.stackText) {
    print(`nothing to change: stack ${ctx.stack} already has ${describeState(from)}`);
    return { ok: true, ...base, steps: [], totalMs: 0, warnings: [] };
  }
  print(`${change === 'undo' ? 'undo' : 'rollback'} stack ${ctx.stack} (${ctx.target}): ${describeState(from)} -> ${describeState(to)}`);
  const outcome = await ctx.surface.applyChange(toText, change, steps, {
    run: options.run ?? runCommand,
    creds: await probeCredentials(ctx),
    print,
    ...(options.transformConfig ? { transformConfig: options.transformConfig } : {}),
    ...(options.dockerVerify ? { verify: options.dockerVerify } : {}),
    ...(options.hasPulumi !== undefined ? { hasPulumi: options.hasPulumi } : {}),
  });
  const file = historyPath(ctx);
  if (change === 'undo') await popHistory(file, ctx.stack);
  else await pushHistory(file, { at: new Date().toISOString(), stack: ctx.stack, target: ctx.target, before: { ...from, text: ctx.stackText }, after: { ...to, text: toText } });
  const totalMs = steps.elapsedMs();
  const { verifiedMs, warnings } = outcome;
  print(`${change === 'undo' ? 'undo' : 'rollback'} done in ${seconds(totalMs)}${verifiedMs !== undefined ? ` (verified after ${seconds(verifiedMs)})` : ''}: ${describeState(to)}`);
  for (const w of warnings) print(`warning: ${w}`);
  if (planRollback(from, to).desyncRisk) print('note: /ws/ now runs on a multi-worker backend (desync risk, npm run check fails); next: npm run rollback -- --backend-workers 1');
  return { ok: true, ...base, steps: steps.records, totalMs, ...(verifiedMs !== undefined ? { verifiedMs } : {}), warnings };
}
