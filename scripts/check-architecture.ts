#!/usr/bin/env tsx
// `npm run check`: the architecture check. Static rules over the stack topology and the nginx
// config rendered from it, then live rules over the running stack; prints a table of rule,
// status, detail and fix, and exits non-zero when any rule fails.
import { runCheck, type CheckReport } from '../infra/operate/check.js';
import { COMMON_HELP, errorJson, formatTable, isMain, parseFlags, runScript } from '../infra/operate/cli.js';
import { resolveContext } from '../infra/operate/stack.js';

const HELP = `Usage: npm run check -- [--static-only] [options]

Checks the architecture of a stack. Every row says what it judged: the stack file (one gateway
worker or the Redis broker, desync risk, heartbeat vs timeouts), the nginx config rendered from it
(routing, upgrade headers, buffering, timeouts, blocked /api/debug/, /internal/ and /metrics,
token-free log formats, worker_shutdown_timeout), and, unless --static-only, the running system:
the same nginx rules over the config the running nginx loaded, a directive diff against the
rendered one, every service's process and listener, the settings each service loaded, the /ws/
handshake, worker counts, Redis, Postgres, and tokens or secrets in the logs. Fixes are printed
below the table as complete commands for this stack. Exit 1 when a rule fails. --json prints JSON
on stdout, also when the check cannot run (an invalid stack file: {"ok": false, "error": ...}).

Options:
  --static-only              skip the running system (no running stack needed)
${COMMON_HELP}

Docker/AWS: set REPLYX_ADMIN_TOKEN (operator JWT) and REPLYX_DEBUG_TOKEN for the /ws/ and debug probes.`;

/**
 * Renders a report as the table operators read: rule, what it was judged against, status and
 * detail; the fixes follow the table, whole, one per failed or warned row.
 */
export function formatCheckReport(report: CheckReport): string {
  const rows = report.results.map((r) => [r.id, r.against, r.status.toUpperCase(), r.detail]);
  const failed = report.results.filter((r) => r.status === 'fail').length;
  const warned = report.results.filter((r) => r.status === 'warn').length;
  const summary = report.ok
    ? `check passed: ${report.results.filter((r) => r.status === 'pass').length} rows pass${warned ? `, ${warned} warn` : ''} (stack ${report.stack}, target ${report.target})`
    : `check FAILED: ${failed} row${failed === 1 ? '' : 's'} failed (stack ${report.stack}, target ${report.target})`;
  const fixes = report.results.filter((r) => r.fix !== '').map((r) => `  ${r.id} (${r.against}): ${r.fix}`);
  return [formatTable(['rule', 'against', 'status', 'detail'], rows, Infinity), '', ...(fixes.length > 0 ? ['fixes:', ...fixes, ''] : []), summary].join('\n');
}

/** The flags besides --stack that selected the stack, repeated in printed fixes so they act on the same one. */
function selectorFlags(flags: { 'project-dir'?: string; 'state-dir'?: string }): string[] {
  return [...(flags['project-dir'] ? ['--project-dir', flags['project-dir']] : []), ...(flags['state-dir'] ? ['--state-dir', flags['state-dir']] : [])];
}

async function main(argv: readonly string[]): Promise<number> {
  const json = argv.includes('--json');
  try {
    const flags = parseFlags(argv, { 'static-only': { type: 'boolean' } }, 'check');
    if (flags.help) {
      console.log(HELP);
      return 0;
    }
    const ctx = await resolveContext(flags);
    const report = await runCheck(ctx, { staticOnly: flags['static-only'] === true, selector: selectorFlags(flags) });
    console.log(flags.json ? JSON.stringify(report, null, 2) : formatCheckReport(report));
    return report.ok ? 0 : 1;
  } catch (err) {
    if (!json) throw err;
    // --json promises JSON on stdout whatever happened: an invalid stack file is a report too.
    console.log(JSON.stringify({ ok: false, error: errorJson(err), results: [] }, null, 2));
    return 1;
  }
}

if (isMain(import.meta.url)) await runScript(main);
