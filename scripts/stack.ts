#!/usr/bin/env tsx
// `npm start` / `npm stop` / `npm run stack -- <command>`: the local stack as processes
// (Postgres, Redis, backend, gateway, nginx), state in .stack/. Like `docker compose up -d`,
// `up` returns once everything is healthy.
import path from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { $ } from 'zx';
import { lastLines } from '../infra/processes/log-tail.js';
import { ReplyxError, formatErrorForCli } from '../infra/errors.js';
import { isGatewayProcess, parseServiceName, SERVICE_ALIASES, SERVICE_NAMES } from '../infra/topology/service-names.js';
import { isStackName } from '../infra/topology/index.js';
import { isMain } from '../infra/operate/cli.js';

const LOCAL_SERVICES = SERVICE_NAMES;
/** The opt-in monitoring process (the local plan's MONITORING_SERVICE; that module loads lazily). */
const PROMETHEUS = 'prometheus';
type LocalName = (typeof LOCAL_SERVICES)[number] | `gateway-${number}` | typeof PROMETHEUS;
const ALIASES = Object.entries(SERVICE_ALIASES).map(([alias, name]) => `${alias} = ${name}`).join(', ');

const COMMON = '  --stack NAME   use Pulumi.NAME.yaml (default: local)\n  --project-dir DIR, --state-dir DIR   another checkout or stack state (or REPLYX_PROJECT_DIR / REPLYX_STATE_DIR)\n  --help         show this help';

const HELP: Record<string, string> = {
  main: `Usage: npm run stack -- <command> [options]   (npm start = up, npm stop = down)

Commands:
  up [--monitoring]  start postgres, redis, backend, gateway, nginx and print the URLs; on a running
                     stack apply the stack file (restart what changed) and verify the live values;
                     --monitoring adds Prometheus scraping backend and gateway with the alert rules
  down               stop every service, nginx first
  status [--json]    service, pid, port, state (healthy, unhealthy, crashed, stopped) with the command that
                     recovers it, restarts (crashed services are restarted with backoff), URL
  logs SVC [-f]      print a service's logs (nginx: access and error logs; -f follows them)
  restart SVC        restart one service (gateway drains its clients first)
  apply              bring the running stack back to its stack file: start what is down, restart
                     what runs with other settings, re-render, validate, swap and reload nginx
  set KEY VALUE...   change settings in the stack file (comments kept, validated); npm start applies them
  redact-logs        replace tokens and secrets found in the stack's logs with [redacted]
  tokens [--json]    demo admin JWT, site tokens, widget session, publish key, the seed's wscat/curl
                     checks and the HTTP publish recipe

Services: ${LOCAL_SERVICES.join(', ')}, ${PROMETHEUS} (with monitoring) (also accepted: ${ALIASES})
Options:
${COMMON}`,
  up: `Usage: npm start [-- --stack NAME] [-- --monitoring]\n\nStarts every service that is not running, waits until each is healthy, prints the URLs. On a\nrunning stack it applies the stack file: a route or backend worker change goes through the\nrollback's path, nginx is re-rendered and reloaded, services whose settings changed restart, and\nthe live values are read back (RPX_DEPLOY_NOT_APPLIED names any that is not live).\n  --monitoring   also run Prometheus (Debian's /usr/bin/prometheus) with monitoring/alerts.yml,\n                 as if the stack file set replyx:monitoring.enabled (kept until npm stop)\n${COMMON}`,
  down: `Usage: npm stop [-- --stack NAME]\n\nStops nginx, gateway, backend, redis and postgres (data in .stack/ is kept).\n${COMMON}`,
  status: `Usage: npm run stack -- status [--json]\n\nShows each service's pid, port, state, restarts by the watchdog and URL (Prometheus's too when monitoring runs).\nStates: healthy; unhealthy (runs, its health probe fails: hung or failing); crashed (died without a stop:\nthe watchdog restarts it, or npm start when no watchdog runs); stopped. Each one not healthy gets the command\nthat recovers it. Exit 3 when a service is not healthy.\n  --json         machine-readable output\n${COMMON}`,
  logs: `Usage: npm run stack -- logs SVC [-f] [-n LINES]\n\nPrints the last lines of a service's logs; a service with several (nginx: access.log, error.log and\nits stderr) gets a ==> file <== header before each. SVC: ${LOCAL_SERVICES.join(', ')}, ${PROMETHEUS}\n  -f, --follow   keep printing new lines (Ctrl-C to stop)\n  -n, --lines N  how many lines per file (default 100)\n${COMMON}`,
  restart: `Usage: npm run stack -- restart SVC\n\nStops and starts one service without failing what is in flight: the backend finishes the requests\nit holds (WebSockets are untouched); the gateway is replaced without refusing a handshake: with\nseveral replicas one at a time leaves nginx's upstream, hands its port to its new process and drains\nto it alone (4200, each client moves once and resumes with since=); the next leaves with the ones\nstill to be replaced, and all rejoin at the end; a single gateway gets a stand-in on a spare port that nginx switches\nto, the old one lets go of its port and keeps its clients, the new one starts on it, nginx switches\nback, and only then do the old one and the stand-in drain (each client moves once);\nnginx hands over (the old one\nfinishes its requests); postgres uses its fast shutdown. The watchdog does not count an intended\nrestart as a crash.\nSVC: ${LOCAL_SERVICES.join(', ')}, or gateway-N for one gateway replica\n${COMMON}`,
  apply: `Usage: npm run stack -- apply\n\nBrings the running stack back to its stack file (what npm run check compares it with): starts\nservices that are down, restarts backend/gateway when they run with other settings, sets Redis's\nmaxmemory, and re-renders the nginx config, validates it (nginx -t), swaps it atomically and\nreloads nginx when the running config differs. A route or worker-count change goes through the\nrollback's path, as with npm start; the values are read back afterwards (RPX_DEPLOY_NOT_APPLIED\nnames any that is not live). Changes nothing on a stack that matches.\n${COMMON}`,
  set: `Usage: npm run stack -- set KEY VALUE [KEY VALUE ...]\n\nWrites settings into the stack file under config: (KEY as in the configuration reference:\ngateway.heartbeatMs, backend.workers, wsRoute, ...), keeping its comments. The whole file is\nvalidated first: nothing is written when a key is unknown or a value out of range. Changes\nnothing that runs: npm start applies the file to a running stack and verifies it.\n${COMMON}`,
  'redact-logs': `Usage: npm run stack -- redact-logs\n\nReplaces every token and secret npm run check finds in the stack's logs (JWTs, token= query\nvalues, the stack's secrets) with [redacted], in place. Rotate the leaked credentials too.\n${COMMON}`,
  tokens: `Usage: npm run stack -- tokens [--json]\n\nPrints demo credentials, the gateway's publish key, the seed's wscat/curl checks and the HTTP\npublish recipe (POST /internal/publish) for this stack's ports and keys.\n  --json         machine-readable output\n${COMMON}`,
};

const OPTIONS: Record<string, ParseArgsConfig['options']> = {
  up: { monitoring: { type: 'boolean' } },
  down: {},
  status: { json: { type: 'boolean' } },
  logs: { follow: { type: 'boolean', short: 'f' }, lines: { type: 'string', short: 'n' } },
  restart: {},
  apply: {},
  set: {},
  'redact-logs': {},
  tokens: { json: { type: 'boolean' } },
};

/** The flags every stack command takes besides its own. */
const SELECT_OPTIONS = { stack: { type: 'string' }, 'project-dir': { type: 'string' }, 'state-dir': { type: 'string' }, help: { type: 'boolean', short: 'h' } } as const satisfies ParseArgsConfig['options'];

/** A parsed stack command line. */
export interface StackArgs {
  readonly command?: string;
  readonly positionals: string[];
  readonly values: { stack?: string; 'project-dir'?: string; 'state-dir'?: string; help?: boolean; json?: boolean; follow?: boolean; lines?: string; monitoring?: boolean };
}

/** Parses `npm run stack -- <command> ...` strictly (throws RPX_USAGE); the check's fixes are run through this in tests. */
export function parseStackArgs(argv: readonly string[]): StackArgs {
  const command = argv[0] && !argv[0].startsWith('-') ? argv[0] : undefined;
  if (!command) {
    if (argv.includes('--help') || argv.includes('-h') || argv.length === 0) return { positionals: [], values: { help: true } };
    usageError(`expected a command first, got "${argv[0]}"`);
  }
  const options = OPTIONS[command];
  if (!options) usageError(`unknown command "${command}"; use one of: ${Object.keys(OPTIONS).join(', ')}`);
  let parsed;
  try {
    parsed = parseArgs({ args: argv.slice(1), options: { ...options, ...SELECT_OPTIONS }, allowPositionals: true, strict: true });
  } catch (err) {
    usageError((err as Error).message.split('\n')[0]!.replace(/\. To specify.*$/, ''), command);
  }
  const values = parsed.values as StackArgs['values'];
  if (values.stack !== undefined && !isStackName(values.stack)) usageError(`--stack "${values.stack}" is not a stack name`, command);
  if (!['logs', 'restart', 'set'].includes(command) && parsed.positionals.length > 0) usageError(`unexpected argument "${parsed.positionals[0]}"`, command);
  if (command === 'restart' && values.help !== true) serviceArg(parsed.positionals, command);
  if (command === 'set' && values.help !== true && (parsed.positionals.length === 0 || parsed.positionals.length % 2 !== 0)) usageError('set takes KEY VALUE pairs, e.g. set gateway.heartbeatMs 20000', command);
  return { command, positionals: parsed.positionals, values };
}

const log = (line: string) => console.log(line);

function usageError(message: string, command?: string): never {
  throw new ReplyxError('RPX_USAGE', message, `run npm run stack -- ${command ? `${command} ` : ''}--help`);
}

function serviceArg(positionals: string[], command: string): LocalName {
  const svc = positionals[0];
  if (!svc) usageError(`${command} needs a service name (${LOCAL_SERVICES.join(', ')}, ${PROMETHEUS})`, command);
  if (positionals.length > 1) usageError(`unexpected argument "${positionals[1]}"`, command);
  if (svc === PROMETHEUS) return PROMETHEUS;
  // One replica of several (gateway.replicas > 1); `gateway` names them all.
  if (isGatewayProcess(svc) && svc !== 'gateway') return svc as `gateway-${number}`;
  return parseServiceName(svc, LOCAL_SERVICES, `run npm run stack -- ${command} --help`);
}

/** Runs one stack command; resolves with its exit code (tests run printed fixes through this, as the CLI does). */
export async function stackMain(argv: string[]): Promise<number> {
  const { command, positionals, values } = parseStackArgs(argv);
  if (values.help || !command) {
    console.log(command ? HELP[command] : HELP.main);
    return 0;
  }
  const stack = values.stack;
  // Like check, health and rollback: --project-dir/--state-dir or REPLYX_PROJECT_DIR / REPLYX_STATE_DIR select another stack (runbooks, tests).
  const projectDir = values['project-dir'] ?? process.env.REPLYX_PROJECT_DIR;
  const stateDir = values['state-dir'] ?? process.env.REPLYX_STATE_DIR;
  const where = {
    stack,
    ...(projectDir ? { projectDir } : {}),
    ...(stateDir ? { stateDir } : {}),
  };

  const { devStackStatus, downDevStack, loadDevPlan, restartPlanService, serviceUrl, upDevStack } = await import('../infra/targets/local/local-stack.js');
  switch (command) {
    case 'up': {
      const { ensureOsPackages, MONITORING_BINARIES } = await import('../infra/targets/local/os-packages.js');
      const { plan: planned } = await loadDevPlan({ ...where, monitoring: values.monitoring });
      ensureOsPackages(log, planned.ports.prometheus !== undefined ? MONITORING_BINARIES : []);
      if (planned.topology.backend.kind === 'fastapi') {
        const { FASTAPI_BACKEND_MODULES, PYTHON_BIN, missingPythonPackages } = await import('../infra/python/interpreter.js');
        const { execaSync } = await import('execa');
        const missing = missingPythonPackages(FASTAPI_BACKEND_MODULES, (m) => execaSync(PYTHON_BIN, ['-c', 'import importlib, sys; importlib.import_module(sys.argv[1])', m], { reject: false }).exitCode === 0);
        if (missing.length > 0) throw new ReplyxError('RPX_MISSING_PACKAGE', `backend.kind fastapi needs Debian packages that are missing: ${missing.join(', ')}`, `install them with: sudo apt-get install -y ${missing.join(' ')}`);
      }
      const plan = await upDevStack({ ...where, monitoring: values.monitoring }, log);
      log('');
      const url = (u: string, what: string) => log(`  ${u.padEnd(34)} ${what}`);
      url(plan.urls.public, `nginx: /api/ -> backend, /ws/ -> ${plan.topology.wsRoute === 'gateway' ? 'gateway' : 'backend (legacy, pre-migration)'}`);
      url(`${plan.urls.ws}/ws/...`, 'WebSockets through nginx');
      url(`${plan.urls.backend}/health`, 'backend (/metrics for Prometheus)');
      url(`${plan.urls.gateway}/health`, 'gateway (/metrics for Prometheus)');
      if (plan.urls.prometheus) url(`${plan.urls.prometheus}/alerts`, 'Prometheus: alert rules from monitoring/alerts.yml');
      const { demoPagesEnabled, DEMO_PAGES } = await import('../infra/render/nginx.js');
      if (demoPagesEnabled(plan.topology, 'local')) url(`${plan.urls.public}${DEMO_PAGES.path}`, 'demo pages: operator page, customer site with the widget');
      const flag = stack ? ` --stack ${stack}` : '';
      log(`Next: npm run stack -- tokens${flag}   (credentials and the seed's wscat/curl checks); npm stop${stack ? ` --${flag}` : ''}`);
      return 0;
    }
    case 'down':
      await downDevStack(where, log);
      return 0;
    case 'status': {
      const { plan, services, watchdog } = await devStackStatus(where);
      if (values.json) {
        console.log(
          JSON.stringify(
            services.map((s) => ({ service: s.name, state: s.state, recovery: s.recovery ?? null, pid: s.pid ?? null, port: s.port, running: s.running, healthy: s.healthy, restarts: s.restarts, last_restart_error: s.lastRestartError ?? null, url: serviceUrl(plan, s.name) ?? null, log: s.logFile, logs: s.logFiles })),
            null,
            2,
          ),
        );
      } else {
        const rows = [
          ['SERVICE', 'PID', 'PORT', 'STATE', 'RESTARTS', 'URL'],
          ...services.map((s) => [s.name, s.pid ? String(s.pid) : '-', String(s.port), s.state, String(s.restarts), serviceUrl(plan, s.name) ?? '-']),
        ];
        const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
        for (const r of rows) console.log(r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd());
        console.log(watchdog !== undefined ? `watchdog pid ${watchdog}: crashed services are restarted with backoff (RESTARTS counts them)` : 'watchdog not running: crashed services stay down (npm start starts it)');
        for (const s of services) if (s.lastRestartError) console.log(`${s.name}: last restart failed: ${s.lastRestartError}`);
        const shown = (file: string) => (path.relative(process.cwd(), file).startsWith('..') ? file : path.relative(process.cwd(), file));
        for (const s of services) if (s.recovery) console.log(`${s.name} ${s.state}: ${s.recovery} (log: ${shown(s.logFile)})`);
      }
      return services.every((s) => s.healthy) ? 0 : 3;
    }
    case 'logs': {
      const svc = serviceArg(positionals, command);
      const lines = values.lines === undefined ? 100 : Number(values.lines);
      if (!Number.isInteger(lines) || lines < 0) usageError(`--lines must be a whole number, got "${String(values.lines)}"`, command);
      const { plan } = await loadDevPlan(where);
      const specs = plan.services.filter((s) => s.name === svc || (svc === 'gateway' && isGatewayProcess(s.name)));
      if (specs.length === 0) throw new ReplyxError('RPX_NO_LOG', `${svc} is not part of this stack`, svc === PROMETHEUS ? 'start it with npm start -- --monitoring (or set replyx:monitoring.enabled: true)' : `use one of: ${plan.services.map((s) => s.name).join(', ')}`);
      const files = specs.flatMap((s) => s.logFiles);
      if (values.follow) {
        const tail = await $({ stdio: 'inherit', nothrow: true })`tail -n ${String(lines)} -F ${files}`;
        return tail.exitCode ?? 0;
      }
      const read = await Promise.all(files.map(async (file) => ({ file, text: await lastLines(file, lines === 0 ? Infinity : lines).catch(() => undefined) })));
      const present = read.filter((r): r is { file: string; text: string[] } => r.text !== undefined);
      if (present.length === 0) throw new ReplyxError('RPX_NO_LOG', `${svc} has no log yet (${files.join(', ')})`, 'start the stack with npm start');
      // Like tail with several files: a header before each, so lines are never attributed to the wrong log.
      const out = files.length === 1 ? present[0]!.text : present.flatMap((r, i) => [...(i > 0 ? [''] : []), `==> ${r.file} <==`, ...r.text]);
      if (out.length > 0) console.log(out.join('\n'));
      return 0;
    }
    case 'restart': {
      const svc = serviceArg(positionals, command);
      const { plan } = await loadDevPlan(where);
      await restartPlanService(plan, svc, log);
      return 0;
    }
    case 'apply': {
      const { applyPlanToRunningStack } = await import('../infra/targets/local/local-stack.js');
      const { plan, secrets } = await loadDevPlan(where);
      log(`apply ${plan.topology.name} (wsRoute=${plan.topology.wsRoute}, backend workers=${plan.topology.backend.workers}) to the running stack`);
      const report = await applyPlanToRunningStack(where, plan, secrets, log);
      log(`${report.actions.length === 0 ? 'applied: nothing changed' : `applied: ${report.actions.length} change${report.actions.length === 1 ? '' : 's'}`}; verified live: ${report.verified}`);
      return 0;
    }
    case 'set': {
      const { editStackSettings, settingValue } = await import('../infra/topology/edit.js');
      const { stackFilePath } = await import('../infra/topology/index.js');
      const { writeAtomic } = await import('../infra/operate/rollback/history.js');
      const { REPO_DIR } = await import('../infra/operate/stack.js');
      const { readFile } = await import('node:fs/promises');
      const { default: nodePath } = await import('node:path');
      const stackFile = stackFilePath(projectDir ?? REPO_DIR, stack ?? 'local');
      const settings = [];
      for (let i = 0; i < positionals.length; i += 2) settings.push({ key: positionals[i]!, value: settingValue(positionals[i + 1]!) });
      const text = editStackSettings(await readFile(stackFile, 'utf8'), settings, nodePath.basename(stackFile));
      await writeAtomic(stackFile, text);
      for (const s of settings) log(`${nodePath.basename(stackFile)}: ${s.key} = ${JSON.stringify(s.value)}`);
      log(`Next: npm start${stack ? ` -- --stack ${stack}` : ''}   (applies it to the running stack and verifies it)`);
      return 0;
    }
    case 'redact-logs': {
      const { redactLocalLogs } = await import('../infra/targets/local/apply.js');
      const { plan, secrets } = await loadDevPlan(where);
      const n = await redactLocalLogs(plan, secrets, log);
      if (n > 0) log(`redacted ${n} line${n === 1 ? '' : 's'}; rotate the leaked credentials`);
      return 0;
    }
    case 'tokens': {
      const { demoTokens, formatDemoTokens } = await import('../infra/targets/local/demo-tokens.js');
      const { plan, secrets } = await loadDevPlan(where);
      const t = await demoTokens(secrets, { nginx: plan.ports.nginx, backend: plan.ports.backend, gateway: plan.ports.gateway });
      console.log(values.json ? JSON.stringify(t, null, 2) : formatDemoTokens(t));
      return 0;
    }
  }
  return 0;
}

if (isMain(import.meta.url)) {
  stackMain(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      console.error(formatErrorForCli(err));
      process.exit(1);
    },
  );
}
