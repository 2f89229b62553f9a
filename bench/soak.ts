#!/usr/bin/env tsx
// `npm run soak`: the reliability fault suite with long windows and many clients (the CI test,
// test/reliability.live.test.ts, runs one short window per fault). Prints one row per fault and
// exits non-zero when any fault lost, duplicated or failed to reconnect anything.
import { writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { formatErrorForCli } from '../infra/errors.js';
import { scoreTable } from '../test/reliability/score.js';
import { FAULTS, startReliabilityRun, type FaultName, type FaultResult } from '../test/reliability/suite.js';

const HELP = `Usage: npm run soak -- [--messages N] [--rate R] [--admins-per-dialog A] [--faults LIST] [--rounds K] [--json FILE]

Starts a local stack on free ports, clients that follow docs/gateway.md's reconnect contract on
every demo dialog and a publisher that retries with an Idempotency-Key, then injects each fault
in turn under traffic and scores its window (missing, duplicate deliveries, duplicate rows,
clients reconnected, time to recover).
  --messages N            messages per fault window (default 6000: a minute at 100 msg/s)
  --rate R                messages per second (default 100)
  --admins-per-dialog A   admin clients per demo dialog; 3 site clients and a widget come on top (default 10)
  --faults LIST           comma-separated subset, in suite order (default: all)
                          ${FAULTS.join(', ')}
  --rounds K              run the fault list K times (default 1)
  --json FILE             also write every result as JSON`;

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      messages: { type: 'string', default: '6000' },
      rate: { type: 'string', default: '100' },
      'admins-per-dialog': { type: 'string', default: '10' },
      faults: { type: 'string' },
      rounds: { type: 'string', default: '1' },
      json: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const int = (name: string, v: string, min: number) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be a whole number >= ${min}, got "${v}"`);
    return n;
  };
  const faults = (values.faults?.split(',').map((f) => f.trim()) ?? [...FAULTS]) as FaultName[];
  for (const f of faults) if (!FAULTS.includes(f)) throw new Error(`unknown fault "${f}"; use: ${FAULTS.join(', ')}`);
  const rounds = int('rounds', values.rounds, 1);
  const run = await startReliabilityRun({
    messagesPerFault: int('messages', values.messages, 1),
    ratePerS: int('rate', values.rate, 1),
    adminsPerDialog: int('admins-per-dialog', values['admins-per-dialog'], 1),
    log: (l) => console.log(l),
  });
  const results: FaultResult[] = [];
  try {
    for (let round = 1; round <= rounds; round += 1) {
      for (const fault of faults) {
        const r = await run.fault(fault);
        results.push(r);
        console.log(`${rounds > 1 ? `round ${round}: ` : ''}${fault}: ${r.messages} messages, ${r.missing} missing, ${r.duplicateDeliveries} dup deliveries, ${r.duplicateRows} dup rows, ${r.reconnected} reconnected, recovery ${(r.recoveryMs / 1000).toFixed(1)} s (inject ${(r.injectMs / 1000).toFixed(1)} s, ${r.retries} retries, ${r.resyncs} resyncs, ${r.cutRequests} requests cut by a backend)`);
        for (const e of r.examples) console.log(`    ${e}`);
      }
    }
  } finally {
    await run.stop();
  }
  console.log(`\n${scoreTable(results)}`);
  if (values.json) await writeFile(values.json, `${JSON.stringify(results, null, 2)}\n`);
  const bad = results.filter((r) => r.missing + r.duplicateDeliveries + r.duplicateRows + r.rejected + r.unstored + r.eventIdMismatches + r.cutRequests > 0 || !r.allReconnected);
  return bad.length === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(formatErrorForCli(err));
    process.exit(1);
  },
);
