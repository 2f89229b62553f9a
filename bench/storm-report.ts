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
  return `- **(e) reconnect storm.** *Time to resume* is per client outage: closed (4200) → reconnected with
  \`since=\` and every event of its dialog published while it was away received; the aim is its max
  (every client back within ${STORM_AIM_MS / 1000} s of its own close). A drain's span (first close of a process → last of its
  clients resumed) is shown beside it: it includes the window over which the drain spreads its
  closes on purpose, while the clients not yet closed are still served. Lost = an event of its dialog
  published during the run that a client never received; duplicates = the app saw an event twice,
  plus frames the server sent twice that the client dropped; 502s = nginx's JSON access-log lines for
  \`/ws/\` with a 5xx; retries = attempts beyond the first (a handshake not answered within the
  client's 10 s connect timeout, then backoff). What bounds it: a client waits 0–2 s of jitter (the
  contract), then its handshake queues behind the others the drain released: a drain hands N clients
  to the receiving process within \`gateway.drainWindowMs\` (default 5 s) plus 2 s, i.e. N ÷ 7 s
  handshakes a second, and when that is above the connect rate the receiving side sustains ((d): ~1,570/s
  through nginx on a quiet box, far less with the box shared), the handshake time grows with the
  queue. 10,000 ÷ 7 s ≈ 1,430/s is at the quiet box's rate; on these 2 cores the draining process, the
  receiving one, nginx, Redis and the client processes share the CPU. Blue/green (1 replica) moves
  every client once: the old process lets go of its port and keeps its clients while the new one
  starts on it (a stand-in takes new handshakes meanwhile), and drains only once nginx has switched
  back, so all N land on a process that has just started (cold JIT and access cache). (Until
  2026-12-03 the old process drained to the stand-in and the stand-in to the new process: every
  client moved twice, and handshakes to the just-started stand-in passed the 10 s connect timeout:
  max 15.5 s, 4,408 retries.) A rolling restart of 2 replicas does the same per replica: its old process keeps
  its clients until the new one serves and drains to it alone (the other replica marked down
  meanwhile), so each client moves once, in two waves of about N ÷ 2 (until 2026-12-03 the first
  replica's clients went to the second, which was replaced next, and moved again). A longer drain window lowers the arrival rate (time to resume
  drops towards jitter + one handshake) at the price of a longer restart. Listen backlogs are 4096 on
  nginx and the gateway (Node's and nginx's default is 511; a full accept queue drops SYNs, and each
  costs its client a 1 s, 3 s, 7 s retransmit: in a development run of the blue/green case with 511
  the kernel counted 36,408 listen overflows and time to resume was p50 7.5 s / p99 21.7 s, against
  no overflow and 3.6 s / 11.1 s with 4096 at a similar load); a handshake that reaches a draining gateway (sent just before nginx switched) is
  answered 101 + 4200, so it is retried after jitter, not a 502 and backoff.
`;
}
