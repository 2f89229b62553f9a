#!/usr/bin/env tsx
// `npm run rollback`: the seed's rollback plan as one command. Moves /ws/ between the gateway
// and the backend and/or changes the backend's worker count, live and in the stack config,
// verifies the result and restores the previous state when verification fails. `--undo`
// restores the state before the last rollback exactly (stack file byte for byte).
import path from 'node:path';
import { ReplyxError } from '../infra/errors.js';
import { COMMON_HELP, intFlag, isMain, parseFlags, runScript, seconds } from './operator/cli.js';
import { resolveContext, type StackContext } from './operator/context.js';
import { probeCredentials } from './operator/live-state.js';
import { dockerRollbackCommands, rollbackDocker, type DockerRollbackOptions } from './operator/rollback-docker.js';
import { historyFile, lastEntry, popHistory, pushHistory, readHistory, writeAtomic, type HistoryEntry } from './operator/rollback-history.js';
import { rollbackLocal, topologyOfText, type LocalRollbackOptions } from './operator/rollback-local.js';
import { changeFromFlags, editStackText, planRollback, stateOf, type RollbackChange, type RollbackPlan, type RollbackState } from './operator/rollback-plan.js';
import { runCommand, type CommandRunner } from '../infra/processes/run.js';
import { StepRunner, type StepRecord } from './operator/steps.js';

const HELP = `Usage: npm run rollback -- (--ws-to backend|gateway | --backend-workers N | both | --undo) [--dry-run] [options]

The seed's rollback plan in one command, live and persisted in the stack config:
  --ws-to backend            route /ws/ to the backend again (pre-migration design)
  --ws-to gateway            route /ws/ back to the ws-gateway
  --backend-workers N        run the backend with N workers (1 stabilises /ws/ on the backend)
  --undo                     restore the state before the last rollback (stack file byte for byte)
  --dry-run                  print the plan and change nothing

Steps, each printed with its time: record, render, validate (nginx -t), swap (atomic rename),
reload, drain (the old /ws/ server closes its clients: 4200 with jitter from the gateway),
restart backend (new worker count), verify (health, route, delivery probe), persist (stack file).
A failed verification restores the previous config and processes, and says so.

${COMMON_HELP}`;

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
  /** Local target: milliseconds until verification passed (the rest is persisting and the gateway's return). */
  readonly verifiedMs?: number;
  readonly warnings: readonly string[];
}

/** Options for running a rollback in-process (tests). */
export interface RollbackRunOptions {
  readonly print?: (line: string) => void;
  readonly run?: CommandRunner;
  readonly transformConfig?: LocalRollbackOptions['transformConfig'];
  /** Docker target: replaces the health verification (unit tests have no daemon). */
  readonly dockerVerify?: DockerRollbackOptions['verify'];
  /** Whether the Pulumi CLI is available (default: looked up on PATH). */
  readonly hasPulumi?: boolean;
}

// The AWS module pulls in @pulumi/aws (seconds to load): only an aws rollback pays for it.
const loadAws = () => import('../infra/targets/aws/rollback.js');

function historyPath(ctx: StackContext): string {
  return historyFile(ctx.local?.stateDir ?? path.join(ctx.projectDir, '.stack'));
}

function describeState(s: RollbackState): string {
  return `wsRoute=${s.wsRoute}, backend workers=${s.backendWorkers}`;
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

async function dryRun(ctx: StackContext, plan: RollbackPlan, change: RollbackChange | 'undo', toText: string): Promise<string[]> {
  const lines = [`plan for stack ${ctx.stack} (target ${ctx.target}): ${describeState(plan.from)} -> ${describeState(plan.to)}${plan.desyncRisk ? '  (desync risk: /ws/ on a multi-worker backend)' : ''}`];
  if (ctx.target === 'aws') {
    const aws = (await loadAws()).planAwsRollback({ stack: ctx.stack, wsRoute: plan.to.wsRoute, backendWorkers: plan.to.backendWorkers });
    for (const argv of [...aws.configCommands, aws.upCommand, aws.outputsCommand]) lines.push(`  ${argv.join(' ')}`);
    lines.push('  aws ecs describe-services ... until every deployment settles');
    return lines;
  }
  const docker = ctx.docker ? dockerRollbackCommands(ctx, topologyOfText(ctx, toText), plan, change === 'undo' ? { wsRoute: plan.to.wsRoute, backendWorkers: plan.to.backendWorkers } : change) : undefined;
  const describe: Record<string, string> = {
    record: 'read the running nginx config and service state',
    render: `render nginx config for wsRoute=${plan.to.wsRoute}`,
    validate: docker ? docker.validate.join(' ') : 'nginx -t on nginx.conf.next',
    swap: 'rename nginx.conf.next over nginx.conf',
    reload: docker ? docker.reload.join(' ') : 'SIGHUP to the nginx master (nginx -s reload)',
    drain: docker?.drain ? docker.drain.join(' ') : plan.drain === 'gateway' ? 'restart ws-gateway: old process closes its clients with 4200 over DRAIN_WINDOW_MS' : 'restart backend: its legacy /ws/ clients reconnect through the new route',
    'restart backend': docker?.up ? [...docker.configSet.map((a) => a.join(' ')), docker.up.join(' ')].join(' && ') : `restart backend with BACKEND_WORKERS=${plan.to.backendWorkers}`,
    verify: 'health of every service, /ws/ answered by the new route, backend worker count, delivery probe',
    persist: change === 'undo' ? `restore ${path.basename(ctx.stackFile)} byte for byte` : `set the stack config (${path.basename(ctx.stackFile)})`,
  };
  plan.steps.forEach((s, i) => lines.push(`  ${String(i + 1).padStart(2)}. ${s.padEnd(16)} ${describe[s] ?? ''}`));
  return lines;
}

/** Runs a rollback on a resolved stack; throws a ReplyxError when it fails (after restoring). */
export async function runRollback(ctx: StackContext, change: RollbackChange | 'undo', options: RollbackRunOptions = {}): Promise<RollbackReport> {
  const print = options.print ?? ((l: string) => console.log(l));
  const run = options.run ?? runCommand;
  const { text: toText } = await targetText(ctx, change);
  const from = stateOf(ctx.topology);
  const to = stateOf(topologyOfText(ctx, toText));
  const steps = new StepRunner(print);
  const base = { target: ctx.target, stack: ctx.stack, undo: change === 'undo', from, to };
  if (toText === ctx.stackText) {
    print(`nothing to change: stack ${ctx.stack} already has ${describeState(from)}`);
    return { ok: true, ...base, steps: [], totalMs: 0, warnings: [] };
  }
  print(`${change === 'undo' ? 'undo' : 'rollback'} stack ${ctx.stack} (${ctx.target}): ${describeState(from)} -> ${describeState(to)}`);
  const creds = await probeCredentials(ctx);
  let warnings: readonly string[] = [];
  let verifiedMs: number | undefined;
  if (ctx.target === 'local') {
    const local = await rollbackLocal(ctx, toText, change, steps, { run, creds, print, ...(options.transformConfig ? { transformConfig: options.transformConfig } : {}) });
    warnings = local.warnings;
    verifiedMs = local.verifiedMs;
  } else if (ctx.target === 'docker') {
    warnings = (
      await rollbackDocker(ctx, toText, change, steps, {
        run,
        creds,
        print,
        ...(options.transformConfig ? { transformConfig: options.transformConfig } : {}),
        ...(options.dockerVerify ? { verify: options.dockerVerify } : {}),
        ...(options.hasPulumi !== undefined ? { hasPulumi: options.hasPulumi } : {}),
      })
    ).warnings;
  } else {
    const result = await (await loadAws()).runAwsRollback(
      { stack: ctx.stack, ...(to.wsRoute !== from.wsRoute ? { wsRoute: to.wsRoute } : {}), ...(to.backendWorkers !== from.backendWorkers ? { backendWorkers: to.backendWorkers } : {}) },
      { run: (argv) => run(argv), onStep: (name) => print(`  ${name}...`) },
    );
    for (const s of result.steps) steps.records.push({ name: s.name, ok: true, ms: s.ms, detail: s.argv.join(' ') });
    if (!result.ok) throw new ReplyxError('RPX_ROLLBACK_AWS_ROLLOUT', result.services.filter((s) => s.status !== 'completed').map((s) => s.detail).join('; '), result.fix);
    // pulumi config set rewrote the stack file; an undo puts back the exact previous bytes.
    if (change === 'undo') await writeAtomic(ctx.stackFile, toText);
  }
  const file = historyPath(ctx);
  if (change === 'undo') await popHistory(file, ctx.stack);
  else await pushHistory(file, { at: new Date().toISOString(), stack: ctx.stack, target: ctx.target, before: { ...from, text: ctx.stackText }, after: { ...to, text: toText } });
  const totalMs = steps.elapsedMs();
  print(`${change === 'undo' ? 'undo' : 'rollback'} done in ${seconds(totalMs)}${verifiedMs !== undefined ? ` (verified after ${seconds(verifiedMs)})` : ''}: ${describeState(to)}`);
  for (const w of warnings) print(`warning: ${w}`);
  if (planRollback(from, to).desyncRisk) print('note: /ws/ now runs on a multi-worker backend (desync risk, npm run check fails); next: npm run rollback -- --backend-workers 1');
  return { ok: true, ...base, steps: steps.records, totalMs, ...(verifiedMs !== undefined ? { verifiedMs } : {}), warnings };
}

async function main(argv: readonly string[]): Promise<number> {
  const flags = parseFlags(argv, { 'ws-to': { type: 'string' }, 'backend-workers': { type: 'string' }, undo: { type: 'boolean' }, 'dry-run': { type: 'boolean' } }, 'rollback');
  if (flags.help) {
    console.log(HELP);
    return 0;
  }
  const backendWorkers = intFlag(flags['backend-workers'], 'backend-workers', 'rollback', 1, 64);
  const change = changeFromFlags({ ...(typeof flags['ws-to'] === 'string' ? { wsTo: flags['ws-to'] } : {}), ...(backendWorkers !== undefined ? { backendWorkers } : {}), undo: flags.undo === true });
  const ctx = await resolveContext(flags);
  if (flags['dry-run']) {
    const { text } = await targetText(ctx, change);
    const plan = planRollback(stateOf(ctx.topology), stateOf(topologyOfText(ctx, text)));
    const lines = text === ctx.stackText ? [`nothing to change: stack ${ctx.stack} already has ${describeState(plan.from)}`] : await dryRun(ctx, plan, change, text);
    console.log(flags.json ? JSON.stringify({ dryRun: true, from: plan.from, to: plan.to, steps: plan.steps, lines }, null, 2) : lines.join('\n'));
    return 0;
  }
  const report = await runRollback(ctx, change, flags.json ? { print: (l) => process.stderr.write(`${l}\n`) } : {});
  if (flags.json) console.log(JSON.stringify(report, null, 2));
  return report.ok ? 0 : 1;
}

if (isMain(import.meta.url)) await runScript(main);
