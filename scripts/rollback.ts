#!/usr/bin/env tsx
// `npm run rollback`: the seed's rollback plan as one command. Moves /ws/ between the gateway
// and the backend and/or changes the backend's worker count, live and in the stack config,
// verifies the result and restores the previous state when verification fails. `--undo`
// restores the state before the last rollback exactly (stack file byte for byte).
import { BACKEND_WORKERS_RANGE } from '../infra/topology/ranges.js';
import { COMMON_HELP, intFlag, isMain, parseFlags, runScript } from '../infra/operate/cli.js';
import { changeFromFlags } from '../infra/operate/rollback/plan.js';
import { planRollbackRun, runRollback } from '../infra/operate/rollback/run.js';
import { resolveContext } from '../infra/operate/stack.js';

const HELP = `Usage: npm run rollback -- (--ws-to backend|gateway | --backend-workers N | both | --undo) [--dry-run] [options]

The seed's rollback plan in one command, live and persisted in the stack config:
  --ws-to backend            route /ws/ to the backend again (pre-migration design)
  --ws-to gateway            route /ws/ back to the gateway
  --backend-workers N        run the backend with N workers (1 stabilises /ws/ on the backend)
  --undo                     restore the state before the last rollback (stack file byte for byte)
  --dry-run                  print the plan and change nothing

Steps, each printed with its time: record, render, validate (nginx -t), swap (atomic rename),
reload, drain (the old /ws/ server closes its clients: 4200 with jitter from the gateway),
restart backend (new worker count), verify (health, route, delivery probe), persist (stack file).
A failed verification restores the previous config and processes, and says so.

${COMMON_HELP}`;

/** Parses a rollback command line and the change it asks for (throws RPX_USAGE); the check's printed fixes are run through this in tests. */
export function parseRollbackArgs(argv: readonly string[]) {
  const flags = parseFlags(argv, { 'ws-to': { type: 'string' }, 'backend-workers': { type: 'string' }, undo: { type: 'boolean' }, 'dry-run': { type: 'boolean' } }, 'rollback');
  if (flags.help) return { flags };
  const backendWorkers = intFlag(flags['backend-workers'], 'backend-workers', 'rollback', BACKEND_WORKERS_RANGE.min, BACKEND_WORKERS_RANGE.max);
  const change = changeFromFlags({ ...(typeof flags['ws-to'] === 'string' ? { wsTo: flags['ws-to'] } : {}), ...(backendWorkers !== undefined ? { backendWorkers } : {}), undo: flags.undo === true });
  return { flags, change };
}

async function main(argv: readonly string[]): Promise<number> {
  const { flags, change } = parseRollbackArgs(argv);
  if (flags.help || change === undefined) {
    console.log(HELP);
    return 0;
  }
  const ctx = await resolveContext(flags);
  if (flags['dry-run']) {
    const { plan, lines } = await planRollbackRun(ctx, change);
    console.log(flags.json ? JSON.stringify({ dryRun: true, from: plan.from, to: plan.to, steps: plan.steps, lines }, null, 2) : lines.join('\n'));
    return 0;
  }
  const report = await runRollback(ctx, change, flags.json ? { print: (l) => process.stderr.write(`${l}\n`) } : {});
  if (flags.json) console.log(JSON.stringify(report, null, 2));
  return report.ok ? 0 : 1;
}

if (isMain(import.meta.url)) await runScript(main);
