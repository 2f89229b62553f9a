#!/usr/bin/env tsx
// `npm run health`: every /health, the gateway's debug endpoints and a synthetic admin+widget
// delivery probe with its latency. `--watch SECONDS` repeats until the first failure.
import { ReplyxError } from '../infra/errors.js';
import { COMMON_HELP, formatTable, intFlag, isMain, parseFlags, runScript } from '../infra/operate/cli.js';
import { runHealth, type HealthReport } from '../infra/operate/health.js';
import { probeCredentials } from '../infra/operate/live-state.js';
import { resolveContext } from '../infra/operate/stack.js';

const HELP = `Usage: npm run health -- [--watch SECONDS] [--probe-dialog N] [--skip-probe]
                          [--widget-origin ORIGIN --widget-assistant ID] [options]

Checks nginx, backend and gateway /health, the gateway's debug endpoints (status, sync), then
runs the synthetic probe: an admin panel and a widget join one dialog through nginx, a message is
sent through the backend API, and both must receive it (latency reported). Exit 1 on any failure.

Options:
  --watch SECONDS            repeat every SECONDS; stop with exit 1 at the first failure
  --probe-dialog N           dialog the probe uses (default 900, the probe dialog of the demo data:
                             no user's dialog, and its probe messages are deleted afterwards); the
                             widget joins it with a session resumed by its visitor key (the local
                             stack derives it, else REPLYX_WIDGET_VISITOR_KEY; without one the probe
                             opens a new dialog)
  --skip-probe               only the endpoint checks
  --widget-origin ORIGIN     also check that a customer's widget on ORIGIN (https://shop.example.com)
  --widget-assistant ID      can open a session for assistant ID and connect (both flags together;
                             opens one empty visitor dialog for that assistant)
${COMMON_HELP}

Docker/AWS: set REPLYX_ADMIN_TOKEN (operator JWT) for the probe and REPLYX_DEBUG_TOKEN for debug endpoints.`;

/** Renders a health report as a table with a one-line verdict. */
export function formatHealthReport(report: HealthReport, at = new Date()): string {
  const rows = report.checks.map((c) => [c.name, c.ok ? 'OK' : 'FAIL', `${c.ms} ms`, c.detail]);
  const failed = report.checks.filter((c) => !c.ok);
  const verdict = report.ok ? `healthy (${at.toISOString()})` : `UNHEALTHY: ${failed.map((c) => c.name).join(', ')} (${at.toISOString()})`;
  // The table cuts long details; a failure's whole detail is the cause, so it is printed in full.
  const causes = failed.map((c) => `${c.name}: ${c.detail}`);
  return `${formatTable(['check', 'status', 'time', 'detail'], rows, 90)}\n\n${[...causes, verdict].join('\n')}`;
}

async function main(argv: readonly string[]): Promise<number> {
  const flags = parseFlags(argv, { watch: { type: 'string' }, 'probe-dialog': { type: 'string' }, 'skip-probe': { type: 'boolean' }, 'widget-origin': { type: 'string' }, 'widget-assistant': { type: 'string' } }, 'health');
  if (flags.help) {
    console.log(HELP);
    return 0;
  }
  const watch = intFlag(flags.watch, 'watch', 'health', 1, 86_400);
  const dialogId = intFlag(flags['probe-dialog'], 'probe-dialog', 'health');
  const widgetAssistant = intFlag(flags['widget-assistant'], 'widget-assistant', 'health');
  const widgetOrigin = flags['widget-origin'];
  if ((widgetAssistant === undefined) !== (widgetOrigin === undefined)) throw new ReplyxError('RPX_USAGE', '--widget-origin and --widget-assistant go together', 'run npm run health -- --help');
  const widgetCheck = widgetAssistant !== undefined && typeof widgetOrigin === 'string' ? { assistant: widgetAssistant, origin: widgetOrigin } : undefined;
  const ctx = await resolveContext(flags);
  const creds = await probeCredentials(ctx);
  for (let round = 1; ; round += 1) {
    const report = await runHealth(ctx, creds, { ...(dialogId ? { dialogId } : {}), skipProbe: flags['skip-probe'] === true, ...(widgetCheck ? { widgetCheck } : {}) });
    console.log(flags.json ? JSON.stringify({ round, at: new Date().toISOString(), ...report }) : `${watch ? `round ${round}\n` : ''}${formatHealthReport(report)}`);
    if (!report.ok) return 1;
    if (!watch) return 0;
    await new Promise((r) => setTimeout(r, watch * 1000));
  }
}

if (isMain(import.meta.url)) await runScript(main);
