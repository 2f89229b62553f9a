import { STORM_AIM_MS, stormMet, type StormResult, type StormVariant } from './storm.js';

// The (e) reconnect-storm part of BENCHMARKS.md (pure): its table, its aim rows and the
// paragraph on what bounds it. report.ts places them.

const n = (v: number) => v.toLocaleString('en-US');
const s = (ms: number | undefined) => (ms === undefined ? '–' : `${(ms / 1000).toFixed(1)} s`);

/** One aim row per variant: measured text and met, in report.ts's AimCheck shape. */
export function stormAims(storm: StormResult | undefined): { aim: string; measured: string; met: boolean | undefined }[] {
  if (!storm) return [];
  const slowest = (v: StormVariant) => {
    if (v.storms.length === 0) return '–';
    const spans = v.storms.map((x) => x.spanMs);
    return spans.some((x) => x === undefined) ? 'not all resumed' : s(Math.max(...(spans as number[])));
  };
  return storm.variants.map((v) => ({
    aim: `(e) ${n(v.clients)} clients through nginx, gateway restarted (${v.replicas} replica${v.replicas > 1 ? 's' : ''}, ${v.restart}) while publishing ${n(storm.sizes.ratePerS)} events/s: every client resumed <= ${STORM_AIM_MS / 1000} s after its close, 0 lost, 0 duplicates`,
    measured: v.error
      ? `failed: ${v.error}`
      : `time to resume max ${s(v.resumeMs.max)} (p50 ${s(v.resumeMs.p50)}, p99 ${s(v.resumeMs.p99)}); slowest drain ${slowest(v)}; ${n(v.lost)} lost, ${n(v.duplicates + v.wireRepeats)} duplicates, ${n(v.refusedHandshakes)} 502s, ${n(v.notOpen)} not back`,
    met: v.error ? undefined : stormMet(v),
  }));
}

function row(v: StormVariant): string[] {
  if (v.error) return [`${v.replicas} (${v.restart})`, `failed: ${v.error}`, '', '', '', '', '', '', '', '', ''];
  return [
    `${v.replicas} (${v.restart})`,
    `${n(v.opened)}/${n(v.clients)}`,
    v.storms.map((x) => `${n(x.clients)} in ${s(x.spanMs)}`).join('; '),
    `${s(v.resumeMs.p50)} / ${s(v.resumeMs.p99)} / ${s(v.resumeMs.max)}`,
    `${s(v.handshakeMs.p50)} / ${s(v.handshakeMs.p99)}`,
    s(v.restartMs),
    n(v.lost),
    `${n(v.duplicates)} (+${n(v.wireRepeats)} on the wire)`,
    n(v.refusedHandshakes),
    n(v.retries),
    v.loadAvg.map((l) => l.toFixed(2)).join(' / '),
  ];
}

/** The "(e) Reconnect storm" section: sizes, one row per variant, or nothing when the storm did not run. */
export function stormSection(storm: StormResult | undefined, table: (headers: readonly string[], rows: readonly (readonly string[])[]) => string): string {
  if (!storm) return '';
  const z = storm.sizes;
  return `## (e) Reconnect storm: ${n(z.clients)} clients through nginx, \`npm run stack -- restart gateway\` under ${n(z.ratePerS)} events/s

Ours only: the peers have no restart an operator runs that hands clients over (a Socket.IO or
Pushpin restart is a process restart, every socket cut at once). A local stack as \`npm start\` runs it
(temp dir, free ports, backend with 1 worker), ${n(z.clients)} clients of the project's own client
(\`@replyx/client\`, close-code contract: 4200 → reconnect after 0–2 s jitter with \`since=\`) in
${n(z.processes)} processes from ${n(z.sourceAddresses)} loopback source addresses, ${n(z.clientsPerDialog)} per dialog; events
published through the Redis function a backend calls, round-robin over the dialogs. A drain moves a
gateway process's clients; its time is from its first 4200 to the last of them resumed (reconnected
and holding every event published while away).

${table(['replicas (restart)', 'clients open', 'each drain: clients moved, first close → last resumed', 'time to resume p50 / p99 / max', 'handshake p50 / p99', 'restart command', 'lost', 'duplicates', '502s', 'retries', 'load avg at start'], storm.variants.map(row))}
`;
}

/** The paragraph on how (e) is measured and what bounds it. */
export function stormBounds(storm: StormResult | undefined): string {
  if (!storm) return '';
  return `- **(e) reconnect storm.** Per client outage: closed (4200) → reconnected with \`since=\` and every event
  of its dialog published while it was away received (lost = any event of its dialog published during
  the run that never arrived; duplicates = the app saw an event twice, plus frames the server sent twice
  that the client dropped). 502s are nginx's JSON access-log lines for \`/ws/\` with a 5xx. What bounds it:
  each drain closes its clients evenly over \`gateway.drainWindowMs\` (default 5 s) and each client
  waits 0–2 s of jitter (the contract), so one drain takes at least the window plus 2 s plus a
  handshake; the rest is the connect rate through nginx ((d) figures), because a drain hands every
  client to the receiving process within that window, and on these 2 cores the draining process,
  the receiving one, nginx and the client processes all share the CPU. Blue/green (1 replica) moves
  every client twice (to the stand-in, then to the new process) and the receiving process is freshly
  started; a rolling restart of 2 replicas moves half, then all of them (the replaced replica rejoins
  empty and the second drain hands it everyone). A handshake that reaches a draining gateway (sent just
  before nginx switched) is answered 101 + 4200, so it is retried after jitter, not a 502 and backoff.
`;
}
