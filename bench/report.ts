import os from 'node:os';
import { DEFAULTS as GATEWAY_DEFAULTS } from '../gateway/src/config.js';
import { HOLD_FD_HEADROOM } from './hold.js';
import type { BenchRun, DeliveryResult, SystemResult } from './harness.js';
import type { SystemName } from './systems/system.js';
import { stormAims, stormBounds, stormSection } from './storm-report.js';

// Pure renderers for a benchmark run: the console table, BENCHMARKS.md and the SVG chart.
// They take the run and the machine description as data so tests can check them offline.

/** The machine the run happened on. */
export interface MachineInfo {
  readonly cpuModel: string;
  readonly cores: number;
  readonly ramGiB: number;
  readonly kernel: string;
  readonly node: string;
}

/** Describes this machine (CPU model, cores, RAM, kernel, Node). */
export function machineInfo(): MachineInfo {
  const cpus = os.cpus();
  return {
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    cores: cpus.length,
    ramGiB: Math.round((os.totalmem() / 1024 ** 3) * 10) / 10,
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
  };
}

const OURS: SystemName = 'ours';

const fmt = (n: number | undefined, digits = 0): string => (n === undefined || !Number.isFinite(n) ? '–' : n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }));
const kib = (bytes: number | undefined): string => (bytes === undefined ? '–' : fmt(bytes / 1024, 1));
/** Per-process KiB, e.g. "node 3.1, nginx 12.7". */
const byProcess = (bytes: Readonly<Record<string, number>> | undefined): string =>
  bytes === undefined ? '–' : Object.entries(bytes).map(([name, b]) => `${name} ${kib(b)}`).join(', ') || '–';

function status(r: SystemResult): string {
  if (r.skipped) return `skipped: ${r.skipped}`;
  if (r.error) return `failed: ${r.error}`;
  return '';
}

/** One row of the summary: every headline figure of a system. */
interface Row {
  readonly system: string;
  readonly held: string;
  readonly idleKiB: string;
  readonly manyP50: string;
  readonly manyP99: string;
  readonly manyMax: string;
  readonly manyLost: string;
  readonly fanoutRate: string;
  readonly fanoutP50: string;
  readonly fanoutP99: string;
  readonly fanoutLost: string;
  readonly connectsPerS: string;
}

const HEADERS: Record<keyof Row, string> = {
  system: 'system',
  held: 'conns held',
  idleKiB: 'idle KiB/conn',
  manyP50: '(b) p50 ms',
  manyP99: '(b) p99 ms',
  manyMax: '(b) max ms',
  manyLost: '(b) lost',
  fanoutRate: '(a) deliveries/s',
  fanoutP50: '(a) p50 ms',
  fanoutP99: '(a) p99 ms',
  fanoutLost: '(a) lost',
  connectsPerS: '(d) connects/s',
};

function row(r: SystemResult): Row {
  return {
    system: r.label,
    held: r.idle ? `${fmt(r.idle.connections)}${r.idle.failed ? ` (${fmt(r.idle.failed)} failed)` : ''}` : status(r) || '–',
    idleKiB: kib(r.idle?.bytesPerConnection),
    manyP50: fmt(r.many?.latency.p50, 2),
    manyP99: fmt(r.many?.latency.p99, 2),
    manyMax: fmt(r.many?.latency.max, 2),
    manyLost: fmt(r.many?.lost),
    fanoutRate: fmt(r.fanout?.deliveredPerS),
    fanoutP50: fmt(r.fanout?.latency.p50, 2),
    fanoutP99: fmt(r.fanout?.latency.p99, 2),
    fanoutLost: fmt(r.fanout?.lost),
    connectsPerS: r.connects ? `${fmt(r.connects.perS)}${r.connects.authenticated ? ' (auth)' : ''}` : '–',
  };
}

/** The summary as a fixed-width text table for the terminal. */
export function renderTable(run: BenchRun): string {
  const rows = run.results.map(row);
  const keys = Object.keys(HEADERS) as (keyof Row)[];
  const widths = keys.map((k) => Math.max(HEADERS[k].length, ...rows.map((r) => r[k].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(keys.map((k) => HEADERS[k])), line(widths.map((w) => '-'.repeat(w))), ...rows.map((r) => line(keys.map((k) => r[k])))].join('\n');
}

function markdownTable(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const esc = (s: string) => s.replaceAll('|', '\\|');
  return [`| ${headers.map(esc).join(' | ')} |`, `|${headers.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`, ...rows.map((r) => `| ${r.map(esc).join(' | ')} |`)].join('\n');
}

/** ours / peer, formatted as `1.23x`; undefined when either side is missing. */
export function ratio(ours: number | undefined, peer: number | undefined): string {
  if (ours === undefined || peer === undefined || peer === 0 || !Number.isFinite(ours) || !Number.isFinite(peer)) return '–';
  return `${(ours / peer).toFixed(2)}x`;
}

/** One aim of issue 7 and whether this run met it. */
export interface AimCheck {
  readonly aim: string;
  readonly measured: string;
  /** undefined when the run lacks the figures (a peer skipped or failed). */
  readonly met: boolean | undefined;
}

function get(run: BenchRun, name: SystemName): SystemResult | undefined {
  const r = run.results.find((x) => x.system === name);
  return r && !r.error && !r.skipped ? r : undefined;
}

/** Checks the issue's aims against a run (ratios measured in this one run). */
export function checkAims(run: BenchRun): AimCheck[] {
  const ours = get(run, OURS);
  const out: AimCheck[] = [];
  const rate = (r: SystemResult | undefined) => r?.fanout?.deliveredPerS;
  const p99s = (r: SystemResult | undefined): [number, number] | undefined => (r?.fanout && r.many ? [r.fanout.latency.p99, r.many.latency.p99] : undefined);
  for (const [peer, min] of [['pushpin', 1], ['socketio', 1], ['ws-floor', 0.7]] as const) {
    const p = get(run, peer);
    const o = rate(ours);
    const q = rate(p);
    out.push({
      aim: `fan-out deliveries/s >= ${min.toFixed(1)}x ${p?.label ?? peer}`,
      measured: ratio(o, q),
      met: o !== undefined && q !== undefined ? o >= min * q : undefined,
    });
  }
  for (const peer of ['pushpin', 'socketio'] as const) {
    const p = get(run, peer);
    const o = p99s(ours);
    const q = p99s(p);
    out.push({
      aim: `p99 no worse than ${p?.label ?? peer} (fan-out, many dialogs)`,
      measured: o && q ? `${fmt(o[0], 2)} vs ${fmt(q[0], 2)} ms; ${fmt(o[1], 2)} vs ${fmt(q[1], 2)} ms` : '–',
      met: o && q ? o[0] <= q[0] && o[1] <= q[1] : undefined,
    });
  }
  const perConn = ours?.idle?.bytesPerConnection;
  out.push({ aim: '<= 10 KB RSS per idle connection', measured: perConn === undefined ? '–' : `${kib(perConn)} KiB`, met: perConn === undefined ? undefined : perConn <= 10 * 1024 });
  const held = ours?.idle;
  const lost = ours?.many;
  out.push({
    aim: `${fmt(run.options.dialogs * 2)} connections held with 0 lost`,
    measured: held && lost ? `${fmt(held.connections)} held, ${fmt(held.failed)} failed, ${fmt(lost.lost)} lost, ${fmt(lost.dropped)} dropped` : '–',
    met: held && lost ? held.connections === run.options.dialogs * 2 && lost.lost === 0 && lost.dropped === 0 : undefined,
  });
  return out;
}

/** Each (b) run's p99 and the median, e.g. `3.10 / 2.90 / 3.40, median 3.10`. */
export function p99Runs(r: SystemResult | undefined): string {
  if (!r?.many) return '–';
  const runs = r.manyRuns ?? [r.many];
  return `${runs.map((x) => fmt(x.latency.p99, 2)).join(' / ')}, median ${fmt(r.many.latency.p99, 2)}`;
}

/** One aim of issue 17: (a) with 2 replicas. */
function replicasAim(run: BenchRun): AimCheck {
  const one = get(run, 'ours-nginx')?.fanout?.deliveriesPerCpuS;
  const two = get(run, 'ours-2')?.fanout?.deliveriesPerCpuS;
  return {
    aim: '(a) fan-out deliveries per server CPU-s, 2 gateway replicas via nginx >= 0.9x one replica via nginx',
    measured: one && two ? `${ratio(two, one)} (${fmt(two)} vs ${fmt(one)})` : '–',
    met: one && two ? two >= 0.9 * one : undefined,
  };
}

/** Each (d) burst's connects/s and the median, e.g. `2,610 / 2,480 / 2,700, median 2,610`. */
export function connectRuns(r: SystemResult | undefined): string {
  if (!r?.connects) return '–';
  const runs = r.connectsRuns ?? [r.connects];
  return `${runs.map((x) => fmt(x.perS)).join(' / ')}, median ${fmt(r.connects.perS)}`;
}

/** One aim of issue 17: (d) connects/s through nginx with auth against Socket.IO's without auth, medians of the bursts. */
function connectsAim(run: BenchRun): AimCheck {
  const oursResult = get(run, 'ours-nginx');
  const peerResult = get(run, 'socketio');
  const ours = oursResult?.connects;
  const peer = peerResult?.connects;
  const ok = ours !== undefined && peer !== undefined && ours.failed === 0 && peer.perS > 0;
  return {
    aim: `(d) connects/s through nginx with auth >= 1.0x ${SOCKETIO_LABEL}'s without auth, median of ${fmt(run.options.connectRuns ?? 1)} bursts`,
    measured: ok ? `${ratio(ours.perS, peer.perS)}; via nginx ${connectRuns(oursResult)}/s; ${SOCKETIO_LABEL} ${connectRuns(peerResult)}/s` : ours && ours.failed > 0 ? `${fmt(ours.failed)} connects failed` : '–',
    met: ok ? ours.perS >= peer.perS : ours && ours.failed > 0 ? false : undefined,
  };
}

/** One aim of issue 17: (c) gateway plus nginx master and workers, per WebSocket proxied through nginx. */
function viaNginxMemoryAim(run: BenchRun): AimCheck {
  const viaNginx = get(run, 'ours-nginx')?.idle?.bytesPerConnection;
  return { aim: '(c) through nginx <= 15 KiB RSS per idle connection', measured: viaNginx === undefined ? '–' : `${kib(viaNginx)} KiB`, met: viaNginx === undefined ? undefined : viaNginx <= 15 * 1024 };
}

/** One aim of issue 17: (b) p99 no worse than Socket.IO's, medians of the runs. */
function p99Aim(run: BenchRun): AimCheck {
  const ours = get(run, OURS);
  const peer = get(run, 'socketio');
  const o = ours?.many?.latency.p99;
  const q = peer?.many?.latency.p99;
  return {
    aim: `(b) many-dialogs p99 no worse than ${SOCKETIO_LABEL}, median of ${fmt(run.options.manyRuns ?? 1)} runs`,
    measured: o !== undefined && q !== undefined ? `ours ${p99Runs(ours)} ms; ${SOCKETIO_LABEL} ${p99Runs(peer)} ms` : '–',
    met: o !== undefined && q !== undefined ? o <= q : undefined,
  };
}

/**
 * Issue 17's (f): the requested idle connections on one gateway process through its heartbeats.
 * When the process's open-file limit could not hold them, that row says so (met n/a) and a
 * second row checks the same bounds at the count it did hold.
 */
function holdAims(run: BenchRun): AimCheck[] {
  const h = get(run, OURS)?.hold;
  const requested = h?.requested ?? run.options.holdConnections;
  const bounds = `for ${fmt(run.options.holdSeconds)} s of heartbeats, <= 9 KiB each, 0 dropped`;
  const aim = `(f) ${fmt(requested)} idle connections on one gateway process ${bounds}`;
  if (!h) return [{ aim, measured: '–', met: undefined }];
  const measured = `${fmt(h.held)} held (${fmt(h.failed)} failed), ${kib(h.bytesPerConnection)} KiB each, ${fmt(h.dropped)} dropped, >= ${fmt(h.pingsMin)} pings each`;
  const ok = h.failed === 0 && h.dropped === 0 && h.underPinged === 0 && h.openAtEnd === h.held && h.bytesPerConnection <= 9 * 1024;
  if (!h.limitedBy) return [{ aim, measured, met: h.held === requested && ok }];
  return [
    { aim, measured: `not measurable on this machine (open-file limit ${fmt(h.openFileLimit)}, see (f))`, met: undefined },
    { aim: `(f) at what one process can hold here, ${fmt(h.target)} idle connections, ${bounds}`, measured, met: h.held === h.target && ok },
  ];
}

const SOCKETIO_LABEL = 'Socket.IO';

/** Checks issue 17's benchmark aims against a run; each aim is one function, so rows can be added independently. */
export function checkIssue17Aims(run: BenchRun): AimCheck[] {
  return [replicasAim(run), p99Aim(run), viaNginxMemoryAim(run), connectsAim(run), ...stormAims(run.storm), ...holdAims(run)];
}

function deliveryRows(run: BenchRun, pick: (r: SystemResult) => DeliveryResult | undefined): string[][] {
  return run.results.map((r) => {
    const d = pick(r);
    if (!d) return [r.label, status(r) || '–', '', '', '', '', '', '', '', '', '', ''];
    return [
      r.label,
      fmt(d.connections),
      fmt(d.published),
      fmt(d.received),
      fmt(d.lost),
      fmt(d.deliveredPerS),
      fmt(d.latency.p50, 2),
      fmt(d.latency.p99, 2),
      fmt(d.latency.max, 2),
      `${fmt(d.serverCpuPct)} %`,
      fmt(d.deliveriesPerCpuS),
      `${fmt(d.loadCpuPct)} %`,
    ];
  });
}

const DELIVERY_HEADERS = ['system', 'connections', 'published', 'received', 'lost', 'deliveries/s', 'p50 ms', 'p99 ms', 'max ms', 'server CPU', 'deliveries per server CPU-s', 'load procs CPU'];

function versionsLine(run: BenchRun, machine: MachineInfo): string {
  const all: Record<string, string> = { node: machine.node, ...run.backingVersions };
  for (const r of run.results) Object.assign(all, r.versions);
  return Object.entries(all)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
}

/** The (f) section: what was asked, what the process could hold, heartbeats, memory. */
function holdSection(run: BenchRun): string {
  const rows = run.results.filter((r) => r.hold);
  if (rows.length === 0) return '';
  const table = markdownTable(
    ['system', 'asked', 'open-file limit', 'held', 'failed', 'held for', 'heartbeat', 'pings per conn (min / expected)', 'under-pinged', 'dropped', 'RSS before', 'RSS after', 'KiB per connection', 'server CPU'],
    rows.map((r) => {
      const h = r.hold!;
      return [
        r.label,
        fmt(h.requested),
        h.openFileLimit === undefined ? 'unlimited' : fmt(h.openFileLimit),
        fmt(h.held),
        fmt(h.failed),
        `${fmt(h.seconds, 1)} s`,
        `${fmt(h.heartbeatMs)} ms`,
        `${fmt(h.pingsMin)} / ${fmt(h.pingsExpected)}`,
        fmt(h.underPinged),
        fmt(h.dropped),
        `${fmt(h.rssBeforeBytes / 1024 ** 2, 1)} MiB`,
        `${fmt(h.rssAfterBytes / 1024 ** 2, 1)} MiB`,
        kib(h.bytesPerConnection),
        `${fmt(h.serverCpuPct)} %`,
      ];
    }),
  );
  const limited = rows.flatMap((r) => (r.hold!.limitedBy ? [`**Not measurable on this machine:** ${r.hold!.limitedBy}.`] : []));
  return `
## (f) Idle connections held on one gateway process

Clients from ${fmt(run.options.holdSourceAddresses)} loopback source addresses and ${fmt(run.options.holdGenerators)} generator processes, held through the gateway's
heartbeat (its default interval unless the run set one), then counted: still open, pinged, dropped.
${limited.length > 0 ? `\n${limited.join('\n\n')}\n` : ''}
${table}
`;
}

/** BENCHMARKS.md: machine, versions, conditions, every figure, ratios, aims, bounds. */
export function renderMarkdown(run: BenchRun, machine: MachineInfo, chartFile: string): string {
  const o = run.options;
  const ours = get(run, OURS);
  const peers = run.results.filter((r) => r.system !== OURS);
  const ratioRows = peers.map((p) => {
    const q = get(run, p.system);
    return [
      p.label,
      ratio(ours?.fanout?.deliveredPerS, q?.fanout?.deliveredPerS),
      ratio(ours?.fanout?.deliveriesPerCpuS, q?.fanout?.deliveriesPerCpuS),
      ratio(ours?.fanout?.latency.p99, q?.fanout?.latency.p99),
      ratio(ours?.many?.latency.p99, q?.many?.latency.p99),
      ratio(ours?.idle?.bytesPerConnection, q?.idle?.bytesPerConnection),
      ratio(ours?.connects?.perS, q?.connects?.perS),
    ];
  });
  const aims = checkAims(run);
  const connectsRows = run.results.map((r) =>
    r.connects
      ? [
          r.label,
          fmt(r.connects.attempted),
          fmt(r.connects.ok),
          fmt(r.connects.failed),
          fmt(r.connects.perS),
          cpuMs(r.connects.serverCpuMsPerConnect),
          cpuMs(r.connects.proxyCpuMsPerConnect),
          cpuMs(r.connects.backingCpuMsPerConnect),
          cpuMs(r.connects.clientCpuMsPerConnect),
          r.connects.authenticated ? 'token (JWT) verify + dialog lookup' : 'none',
          connectRuns(r),
        ]
      : [r.label, status(r) || '–', '', '', '', '', '', '', '', '', ''],
  );
  const mib = (bytes: number | undefined) => (bytes === undefined ? '–' : `${fmt(bytes / 1024 ** 2, 1)} MiB`);
  const idleRows = run.results.map((r) =>
    r.idle
      ? [r.label, fmt(r.idle.connections), fmt(r.idle.failed), mib(r.idle.rssBeforeBytes), mib(r.idle.afterConnecting?.rssBytes), kib(r.idle.afterConnecting?.bytesPerConnection), mib(r.idle.rssAfterBytes), kib(r.idle.bytesPerConnection), byProcess(r.idle.bytesPerConnectionByProcess)]
      : [r.label, status(r) || '–', '', '', '', '', '', '', ''],
  );
  const notes = run.results.flatMap((r) => {
    const errs = [...(r.idle?.connectErrors ?? []), ...(r.many?.errors ?? []), ...(r.fanout?.errors ?? []), ...(r.connects?.errors ?? [])];
    const lines: string[] = [];
    if (r.error) lines.push(`- ${r.label}: failed — ${r.error}`);
    if (r.skipped) lines.push(`- ${r.label}: skipped — ${r.skipped}`);
    if (errs.length > 0) lines.push(`- ${r.label}: ${[...new Set(errs)].slice(0, 5).join('; ')}`);
    return lines;
  });
  return `# Benchmarks

<!-- Generated by \`npm run bench\` (bench/run.ts). Do not edit by hand: rerun it. -->

Our ws-gateway side by side with what a user would pick instead, measured **in one run on one
machine**: the gateway directly and behind the generated nginx config, Pushpin (WebSocket-over-HTTP
to a tiny origin, publishing through its HTTP API), Socket.IO with the Redis adapter (a room per
dialog, publishing through Redis), and a bare \`ws\` broadcast server with no auth, routing or
Redis that calls \`ws.send\` once per member (the floor for ws's public API on this box).

![benchmark chart](${chartFile})

## Run

- Date: ${run.startedAt} – ${run.finishedAt}
- Machine: ${machine.cpuModel}, ${machine.cores} cores, ${fmt(machine.ramGiB, 1)} GiB RAM, ${machine.kernel}
- Versions: ${versionsLine(run, machine)}
- Load average (1/5/15 min) before: ${run.loadAvgBefore.map((l) => l.toFixed(2)).join(' / ')}, after: ${run.loadAvgAfter.map((l) => l.toFixed(2)).join(' / ')}
- Conditions: every server, Redis, Postgres, the publisher and ${fmt(o.generators)} load generator process(es) share
  these ${machine.cores} cores over loopback; each server runs in its own process, started fresh per system,
  one system at a time (for (d) all of them side by side, bursts in turn). Figures are for
  comparison on this box, not capacity claims.
- Sizes: (a) ${fmt(o.fanoutSubscribers)} subscribers on one dialog, ${fmt(o.fanoutEvents)} events published as fast as the
  publisher's in-flight bound allows; (b) ${fmt(o.dialogs * 2)} connections over ${fmt(o.dialogs)} dialogs (admin + widget each),
  ${fmt(o.manyRatePerS)} events/s for ${fmt(o.manyDurationS)} s, ${fmt(o.manyRuns ?? 1)} run(s) per system; (c) the same ${fmt(o.dialogs * 2)} connections idle for ${fmt(o.idleSettleMs / 1000)} s; (d) ${fmt(o.connectRuns ?? 1)} burst(s) of ${fmt(o.connectCount)} connects per system,
  ${fmt(o.connectConcurrency)} handshakes in flight per generator${o.connectWarmup ? ` (after ${fmt(o.connectWarmup)} unmeasured warm-up connects on other dialogs)` : ''}; (f) ${fmt(o.holdConnections)} idle connections asked of one gateway
  process (ours only), held ${fmt(o.holdSeconds)} s, from ${fmt(o.holdSourceAddresses)} loopback source addresses and ${fmt(o.holdGenerators)} generator processes. Event text ${fmt(o.textBytes)} bytes. Scenario connections
  are opened ${fmt(o.openConcurrency)} handshakes in flight per generator, and before each scenario the harness waits
  (at most ${fmt(o.quiesceTimeoutMs / 1000)} s) until the server is idle, so leftover work is not billed to the next scenario.

## Summary

${markdownTable(Object.values(HEADERS), run.results.map((r) => Object.values(row(r))))}

## Ratios: ours against each peer

\`ours / peer\` from this run. Throughput and connects: higher is better for us; p99 and RSS: lower is better for us.

${markdownTable(['peer', '(a) deliveries/s', '(a) deliveries per server CPU-s', '(a) p99', '(b) p99', '(c) RSS per conn', '(d) connects/s'], ratioRows)}

## Aims (issue 7)

${markdownTable(['aim', 'measured', 'met'], aims.map((a) => [a.aim, a.measured, a.met === undefined ? 'n/a' : a.met ? 'yes' : 'no']))}

## Aims (issue 17)

${markdownTable(['aim', 'measured', 'met'], checkIssue17Aims(run).map((a) => [a.aim, a.measured, a.met === undefined ? 'n/a' : a.met ? 'yes' : 'no']))}

## (a) Fan-out: one dialog, ${fmt(o.fanoutSubscribers)} subscribers, ${fmt(o.fanoutEvents)} events

${markdownTable(DELIVERY_HEADERS, deliveryRows(run, (r) => r.fanout))}

## (b) Many dialogs: ${fmt(o.dialogs * 2)} connections, ${fmt(o.manyRatePerS)} events/s for ${fmt(o.manyDurationS)} s, ${fmt(o.manyRuns ?? 1)} run(s)

Each system's row is its run with the median p99; the last column lists every run's p99.

${markdownTable([...DELIVERY_HEADERS, 'p99 per run ms'], deliveryRows(run, (r) => r.many).map((cells, i) => [...cells, p99Runs(run.results[i])]))}

## (c) Idle memory: ${fmt(o.dialogs * 2)} idle connections

RSS is VmRSS from /proc of the server process(es): the gateway (plus nginx master and workers for the
nginx row), the Pushpin runner with condure, zurl, pushpin-proxy, pushpin-handler and the origin.
Per connection = (RSS with the connections open − RSS before) / connections open, read twice:
${fmt(o.settleMs / 1000, 1)} s after the last connect, and (the figure) after ${fmt(o.idleSettleMs / 1000)} s of idle connections;
RSS before is read after the fresh system has been idle as long.

${markdownTable(['system', 'open', 'failed', 'RSS before', `RSS after ${fmt(o.settleMs / 1000, 1)} s`, 'KiB per connection then', `RSS after ${fmt(o.idleSettleMs / 1000)} s idle`, 'KiB per connection', 'by process, KiB'], idleRows)}

## (d) Connects per second: ${fmt(o.connectRuns ?? 1)} burst(s) of ${fmt(o.connectCount)} per system

CPU ms per connect (from /proc, user + system, over a burst's connects): the server's processes
(nginx included; the nginx column is its part of them), Redis + Postgres, and the load generators'
client library. Each figure is the median over the bursts (counts are their sums); the last column
lists every burst's connects/s.

${markdownTable(['system', 'attempted', 'ok', 'failed', 'connects/s', 'server CPU ms', 'of which nginx', 'Redis+Postgres CPU ms', 'client CPU ms', 'auth per connect', 'connects/s per burst'], connectsRows)}
${holdSection(run)}${run.storm ? `\n${stormSection(run.storm, markdownTable)}` : ''}${notes.length > 0 ? `\n## Errors seen\n\n${notes.join('\n')}\n` : ''}
## How it is measured, and what bounds each figure

- **Clock.** The publisher stamps each event with \`process.hrtime\` (CLOCK_MONOTONIC, shared by every
  process on the machine) just before the publish call; receivers subtract it from their own
  reading, so latency is publish → receive across processes at microsecond resolution. (Wall-clock
  stamps were tried and rejected: per-process start-up pairing of wall and monotonic time was off by
  up to hundreds of ms under load.) Latencies go into HDR histograms (hdr-histogram-js,
  3 significant digits), merged across generators.
- **Lost** = for each connection, events published to its dialog minus events it received (never
  negative); **dropped** = connections closed by the server during the scenario.
- **(a) deliveries/s** = events received by all subscribers ÷ (last receive − first publish). The burst
  is bounded by the publisher's in-flight limit, so p50/p99 here are mostly queueing delay: how
  long the server takes to drain a burst of ${fmt(o.fanoutEvents)} × ${fmt(o.fanoutSubscribers)} sends. On ${machine.cores} cores the load
  generators receive every delivery and compete with the server for CPU, so this figure is bounded
  by the box, not only by the server; the ratio against the ws floor shows what the server adds.
- **Why ours can pass the floor in (a).** The gateway frames each event once, and a socket that
  gets a second frame in the same tick is corked until the tick ends, so the events that arrive
  from Redis in one read leave in two writes per socket, and each client wakes about once per
  batch instead of once per event. The floor writes once per event per socket (\`ws.send\`);
  Socket.IO's engine queues a socket's packets only while its previous write is in flight.
  Write syscalls are what a burst costs here (tens of µs each on this VM), for the server and
  for the generators reading them.
- **Deliveries per server CPU-second** (received ÷ CPU seconds the server processes used) is the
  efficiency figure that survives other load on the machine: deliveries per wall second fall when
  the server is starved of CPU, deliveries per CPU-second do not.
- **(b)** runs below saturation; its p50 is the path's own latency (for us: Lua publish in Redis,
  Redis pub/sub, the gateway's broker, dialog hub, send), p99/max show scheduling and GC pauses,
  and the heartbeat: the gateway pings one ~100 ms slice of its connections per tick (a ping is a
  write per socket; pinging a tenth of 10,000 sockets at once put the earlier runs' p99 near 24 ms).
  A tick now writes one shared, pre-encoded ping frame to its ~40 sockets and holds the event loop
  about 0.3 ms (\`npx tsx bench/micro/heartbeat-tick.ts\`; 0.46 ms with \`ws.ping()\`), so the
  heartbeat is not what sets our p99. Young-generation GC is: a \`--trace-gc\` run of (b) showed a
  scavenge every ~1.5 s, 3–6 ms each (a few of 12–22 ms), and every event arriving meanwhile waits.
  A larger young generation (\`--max-semi-space-size=32\` or \`64\`) scavenges less often, but in
  development runs it raised RSS per idle connection from ~9.7 to 11 and 16 KiB, against the (c)
  and (f) memory aims, so the gateway runs with Node's default.
  One 20 s p99 on a shared 2-core box moved by up to 2× between runs (scheduling, GC timing), so
  each system runs (b) ${fmt(o.manyRuns ?? 1)} times over the same connections (the server idle before each)
  and the aim compares the medians; every run's p99 is listed, so a spread is visible. One
  system's runs follow each other, so load from outside the run that lasts through a system's
  slot still moves all of its runs: compare medians from a quiet machine.
- **(a) with 2 replicas** runs two gateway processes on one Redis behind the nginx config rendered
  from a topology with \`gateway.replicas: 2\` (least_conn upstream), so the subscribers split
  between them. Every replica receives each event from Redis and frames it once for its own
  subscribers. What a second replica adds: one more Redis read and parse per event, a second
  process's fixed work, and smaller write batches (each replica drains its half of a burst
  sooner, so fewer events arrive per Redis read and a socket's frames leave in more writes, which
  the gateways and nginx both pay per write). Deliveries per server CPU-second (both gateways plus
  nginx) shows it against one replica behind the same nginx; a burst this short spans well under
  one CPU-second, so the figure moves by several percent between runs.
- **(f)** holds idle connections on the single gateway process for ${fmt(o.holdSeconds)} s at its heartbeat
  interval (each connection is pinged once per interval, one ~100 ms slice per tick; the client
  library answers each ping with a pong and counts it; a peer that misses a pong is cut and counted
  as dropped). The clients come from several loopback source addresses (one address has only
  ~28,000 ephemeral ports towards one port) and several generator processes (each process has
  the same open-file limit). The figure is bounded by the gateway process's open-file limit: one
  descriptor per socket, plus ${fmt(HOLD_FD_HEADROOM)} left for Redis, Postgres, logs and handshakes in flight;
  when that limit is below the count asked for, the run holds what fits and says so. KiB per
  connection is RSS at the end of the window minus RSS before opening, on a fresh gateway process
  (after (c) the process keeps a heap grown for 10,000 sockets that new ones reuse), so it
  includes what the heartbeat allocated; read after the window rather than 3 s after connecting,
  the connect burst's garbage is mostly collected, which is why it sits below (c)'s figure.
- **(c)** is read after ${fmt(o.idleSettleMs / 1000)} s of idle connections, the window (f) holds its connections for, and its
  baseline after the fresh system has been idle as long; no GC is forced. The reading
  ${fmt(o.settleMs / 1000, 1)} s after the last connect is in the table too: it includes the heap the connect burst grew.
  Fixed costs (nginx's connection arrays for \`worker_connections\`, which each worker fills at start,
  its shared rate-limit zones, Node's start-up heap) are in "RSS before", so only what each
  connection adds counts; BENCHMARKS.json splits it by process (\`bytesPerConnectionByProcess\`:
  the gateway's \`node\`, \`nginx\`). The gateway keeps a socket and one connection object that is its
  own WebSocket (gateway/src/transport: about 1.3 KiB of heap per socket after a GC, 2.9 KiB while
  ws's WebSocket, Receiver and Sender sat on each socket). Just after connecting
  its share is larger: every new connection's objects survive a scavenge, which makes V8 grow the
  young generation (up to Node 20's 16 MiB per semi-space), and old space keeps the burst's promoted
  garbage until the next full GC. V8's memory reducer gives both back once the process has been idle
  a while, but not at a fixed time (45-100 s after the burst in traced runs), so at the 60 s reading
  one gateway process may have given it back (about 2.3 KiB per socket left, as in (f)) and another
  not yet (about 4 KiB): compare the rows of one run. Through nginx, whose 12.7 KiB does not move,
  aim (c) is met only when the gateway's reducer has run by the reading.
  The other Node systems (Socket.IO, bare ws) are read the same way. Through nginx 1.22, each WebSocket keeps its whole
  upgraded request until it closes (nginx's debug log of one connection lists every block): the
  request (1.5 KB), upstream (1.1 KB) and two 20-entry header lists (0.9 KB each) that nginx sizes
  itself; the \`nginx.clientHeaderBufferKb\` header buffer (2 KiB, sized for a browser's handshake with
  its token); the connection's pool (512 bytes); and the request pool's \`nginx.requestPoolBytes\`
  blocks (about 5.3 KB: module contexts, variables, the proxied request's headers, the 101 response
  and the two \`nginx.wsProxyBufferBytes\` buffers, which fit in its blocks): about 12.6 KiB, of which
  settings reach only the header buffer and the pool (\`npx tsx bench/micro/nginx-ws-memory.ts\`
  measures nginx alone).
- **(d)** runs after the other scenarios, in a pass of its own: every system is started again,
  side by side and idle, warmed with ${fmt(o.connectWarmup)} connects, and then the bursts go round the systems
  (burst 1 of each, burst 2 of each, ...), each of ${fmt(o.connectCount)} connects on dialogs no earlier burst or
  scenario used, started only when every system is idle. Load from outside the run that comes and
  goes then falls on every system's bursts alike rather than on one system's slot; each figure is
  the median over the ${fmt(o.connectRuns ?? 1)} bursts (every burst's rate is listed) and the aim compares
  medians. One ~1 s burst moved by up to 2× between runs on this shared box, and after 500 warm-up
  connects the first burst still cost every system up to 2× the CPU per connect of its later ones,
  hence a burst's worth of warm-up. For us each connect verifies a token (the one admin JWT of the
  admin connects, as a signed-in operator's; a widget session token bound to its dialog and origin
  per widget connect) and reads the dialog's access row from Postgres; (d)'s widget tokens and
  dialogs are ones the gateway has not seen in the run, so no cache hides that work (a real
  reconnect storm presents tokens and dialogs seen before, and costs less). The peers do no auth;
  their figure is the floor a handshake costs. On ${machine.cores} cores every process of a system competes
  for the same CPU, so the rate is bounded by the sum of the CPU columns and by the busiest
  single-threaded process (the gateway, Socket.IO's server, a generator). The handshakes of a burst
  reach the gateway one per event-loop turn; their dialog lookups go to Postgres at most once per
  \`ACCESS_LOOKUP_WINDOW_MS\` (${fmt(GATEWAY_DEFAULTS.ACCESS_LOOKUP_WINDOW_MS)} ms) together with those that arrive while one is out, and
  the Redis SUBSCRIBEs that arrive while one is out go in one next command, so a burst costs a
  query per few ms rather than one per few clients (waiting only for the query in flight left about
  four dialogs per query; the window took our server CPU per connect down by about 40 % and Redis
  + Postgres' by about 75 %). What remains is mostly Node's own per-socket work (accept, HTTP
  parsing, the upgrade with its SHA-1 accept key, the 101 and the \`connected\` frame in one
  write) and the token check. Through nginx, the nginx column is nginx's part: accepting, parsing
  the request, connecting to the gateway and relaying the 101 (upstream keepalive does not apply to
  upgraded connections, and a WebSocket's access-log line is written when it closes, not during
  the connect).
- **Publish paths differ by design:** ours runs the Lua script (XADD to a capped history stream +
  PUBLISH) so clients can resume with \`since=\`; Socket.IO publishes through its adapter's Redis
  channel; Pushpin takes batches of up to 100 items per HTTP publish request; the floor receives
  events on a WebSocket. Pushpin's Debian default \`message_rate=2500\` is raised so its throttle is
  not what we measure.
- Our gateway runs with \`LOG_LEVEL=warn\` (per-connection info lines off) and per-IP limits raised,
  since every client comes from 127.0.0.1; Pushpin runs at log level 1 for the same reason. Its
  heartbeat is ${o.gatewayHeartbeatMs === undefined ? `the gateway's default, HEARTBEAT_MS ${fmt(GATEWAY_DEFAULTS.HEARTBEAT_MS)}` : `HEARTBEAT_MS ${fmt(o.gatewayHeartbeatMs)} (set for this run)`}, in every scenario.
- **CPU** columns are CPU seconds used during the scenario (from /proc, user + system) divided by its
  wall time: 100 % = one full core. "load procs" = the generators plus the publisher; when server +
  load processes approach the machine's cores, the figure is bounded by the box.
- Pushpin (Debian 1.36: condure in front, zurl to the origin) answered 502 to roughly one handshake in
  ten when 100 were in flight per generator during development runs; the scenario connections are
  therefore opened with a smaller number in flight, for every system alike.
${stormBounds(run.storm)}
## Reproduce

\`\`\`sh
npm run bench                    # full run, rewrites BENCHMARKS.md, ${chartFile} and the raw figures
npm run bench -- --render ${chartFile.replace(/\.svg$/, '.json')}   # rewrite this report from the saved figures
npm run bench -- --smoke         # seconds-long sizes
npm run bench -- --systems ours,ws-floor --profile   # CPU profile of the gateway in .stack/bench-profiles
npm run bench -- --systems ours --scenarios connects --profile --no-write   # only (d), e.g. to profile a connect burst
npm run bench -- --systems ours --scenarios hold --no-write   # only (f): idle connections on one gateway process through 60 s of heartbeats
npm run bench -- --systems ours-nginx,ours-2 --scenarios fanout --no-write   # only (a), one gateway replica against two behind nginx
npm run bench -- --systems ours,socketio --scenarios many --no-write   # only (b), ${fmt(o.manyRuns ?? 1)} runs each
npm run bench -- --scenarios storm --no-write   # only (e), the reconnect storm on a local stack (1 and 2 replicas)
\`\`\`

The k6 scenario for users with k6 (widget connections on many dialogs, messages through the backend
API, no AI) is \`scripts/load/k6_widget_no_ai.js\`.
`;
}

const xml = (s: string) => s.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;');

const COLORS: Record<SystemName, string> = {
  ours: '#2563eb',
  'ours-nginx': '#60a5fa',
  'ours-2': '#93c5fd',
  pushpin: '#f59e0b',
  socketio: '#10b981',
  'ws-floor': '#6b7280',
};

interface Panel {
  readonly title: string;
  readonly unit: string;
  readonly value: (r: SystemResult) => number | undefined;
}

/** CPU milliseconds per operation with two decimals, or a dash when not measured. */
function cpuMs(ms: number | undefined): string {
  return ms === undefined ? '–' : ms.toFixed(2);
}

/** A four-panel bar chart (fan-out rate, p99s, idle memory, connects/s) as standalone SVG. */
export function renderSvg(run: BenchRun): string {
  const panels: Panel[] = [
    { title: '(a) fan-out deliveries/s (higher is better)', unit: '/s', value: (r) => r.fanout?.deliveredPerS },
    { title: '(a) fan-out p99 ms (lower is better)', unit: ' ms', value: (r) => r.fanout?.latency.p99 },
    { title: '(b) many dialogs p99 ms (lower is better)', unit: ' ms', value: (r) => r.many?.latency.p99 },
    { title: '(c) idle KiB per connection (lower is better)', unit: ' KiB', value: (r) => (r.idle ? r.idle.bytesPerConnection / 1024 : undefined) },
    { title: '(d) connects/s (higher is better)', unit: '/s', value: (r) => r.connects?.perS },
  ];
  const width = 760;
  const barH = 18;
  const gap = 6;
  const labelW = 190;
  const chartW = width - labelW - 110;
  const results = run.results;
  const panelH = 30 + results.length * (barH + gap) + 14;
  const height = 40 + panels.length * panelH;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="10" y="24" font-size="15" font-weight="bold">${xml(`replyx benchmarks, ${run.startedAt.slice(0, 10)}`)}</text>`,
  ];
  panels.forEach((panel, p) => {
    const top = 40 + p * panelH;
    const values = results.map((r) => (r.error || r.skipped ? undefined : panel.value(r)));
    const max = Math.max(1e-9, ...values.filter((v): v is number => v !== undefined && Number.isFinite(v)));
    parts.push(`<text x="10" y="${top + 16}" font-weight="bold">${xml(panel.title)}</text>`);
    results.forEach((r, i) => {
      const y = top + 26 + i * (barH + gap);
      const v = values[i];
      parts.push(`<text x="${labelW - 8}" y="${y + 13}" text-anchor="end">${xml(r.label)}</text>`);
      if (v === undefined || !Number.isFinite(v)) {
        parts.push(`<text x="${labelW}" y="${y + 13}" fill="#9ca3af">${xml(r.skipped ? 'skipped' : r.error ? 'failed' : 'n/a')}</text>`);
        return;
      }
      const w = Math.max(1, Math.round((v / max) * chartW));
      parts.push(`<rect x="${labelW}" y="${y}" width="${w}" height="${barH}" fill="${COLORS[r.system]}"/>`);
      parts.push(`<text x="${labelW + w + 6}" y="${y + 13}">${xml(`${fmt(v, v < 100 ? 2 : 0)}${panel.unit}`)}</text>`);
    });
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}
