import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { CloseCodes } from '../close-codes.js';
import { CONNECTION_KINDS, type ConnectionKind, type KindCounts } from '../connection-kinds.js';

// Prometheus metrics. The hot path (per recipient) touches plain numbers only; prom-client
// reads them at scrape time through collect(), so delivery never hashes label sets. Every label
// takes values from a closed set (kinds, registry close codes, outcomes): no dialog, user or
// connection id ever becomes a label. Which instance a series comes from is Prometheus' own
// `instance` label (the scrape target), never one of ours.

/** The state of the gateway's dependencies at scrape time. */
export interface DependencyState {
  /** Undefined when the gateway runs without Redis (memory broker). */
  readonly redis?: boolean;
  readonly postgres: boolean;
}

/** Live values the metrics read at scrape time. */
export interface MetricsSources {
  connections(): KindCounts;
  dialogs(): number;
  /** Connections this process admits: MAX_CONNECTIONS, or less when its open-file limit is lower (limits/open-files.ts). */
  connectionCapacity(): number;
  /** Whether Redis and Postgres answer right now. */
  dependencies(): Promise<DependencyState>;
  /** Whether the access change listener's LISTEN connection is up (access/access-changes.ts). */
  accessListenerConnected(): boolean;
  /** One Redis round trip in seconds; undefined when there is no Redis or it did not answer. */
  redisRoundTrip?(): Promise<number | undefined>;
}

/** How a resume (`since=`) ended: history replayed, `resync` sent (gap), or the history read failed (1011). */
export type ResumeOutcome = 'replayed' | 'resync' | 'ahead' | 'failed';
/** Why clients were told to resync: their `since` was older than the history, or the broker lost events while Redis was away. */
export type ResyncCause = 'resume_gap' | 'broker_gap';
/** Outcomes of POST /internal/publish. */
export type PublishResult = 'accepted' | 'bad-request' | 'unauthorized' | 'unavailable';

/** Close codes counted under their own label value; any other code a client sends counts as "other". */
const KNOWN_CLOSE_CODES: ReadonlySet<number> = new Set([1000, 1001, 1005, 1006, ...Object.values(CloseCodes).map((c) => c.code)]);

/** Handshake outcome label of each registry close code: its name in snake case (4003 -> domain_forbidden). */
// Several names share 4001 (unauthorized, token expired, access revoked); a refused handshake is
// always the first of them, so the first name per code wins.
const HANDSHAKE_OUTCOME: ReadonlyMap<number, string> = new Map(
  Object.entries(CloseCodes)
    .reverse()
    .map(([name, info]) => [info.code, name.toLowerCase()]),
);

/** Every handshake outcome label value: accepted, or a registry close code's name. */
export const HANDSHAKE_OUTCOMES: readonly string[] = ['accepted', ...HANDSHAKE_OUTCOME.values()];

/** The map key of every close code outside KNOWN_CLOSE_CODES (label "other"). */
const OTHER_CODE = -1;

/** One label set of a counter and how many times it was counted since start. */
interface LabelledCount<L extends string> {
  readonly labels: Readonly<Record<L, string>>;
  n: number;
}

/** A counter's collect(): the plain counts of `counts`, set at scrape time. */
function collectCounts<L extends string>(counts: ReadonlyMap<unknown, LabelledCount<L>>): (this: Counter<L>) => void {
  return function collect(this: Counter<L>) {
    this.reset();
    for (const c of counts.values()) this.inc(c.labels, c.n);
  };
}

const zeroCounts = (): KindCounts => ({ admin: 0, widget: 0, site: 0 });

/** The gateway's metrics in their own registry (several gateways can share a test process). */
export class GatewayMetrics {
  readonly registry = new Registry();
  /** Live event frames written, by connection kind; incremented without prom-client in the hot path. */
  readonly delivered: KindCounts = zeroCounts();
  /** Live events addressed to attached, fully resumed connections (sent or not), by kind. */
  readonly recipients: KindCounts = zeroCounts();
  /** Frames sent from history when a connection resumed with `since=`, by kind. */
  readonly replayed: KindCounts = zeroCounts();
  // prom-client hashes and validates the label set on every inc() (a bound child too): the
  // per-connect and per-close counts are plain numbers by label set, handed over at scrape time.
  readonly #closeCounts = new Map<number, LabelledCount<'code'>>();
  readonly #handshakeCounts = new Map<string, LabelledCount<'type' | 'outcome'>>();
  readonly #forbidden: Counter;
  readonly #latency: Histogram;
  readonly #published: Counter<'result'>;
  readonly #deprecated: Counter<'type' | 'via'>;
  readonly #resumes: Counter<'outcome'>;
  readonly #resyncs: Counter<'cause'>;
  readonly #reconnects: Counter;
  readonly #accessNotifications: Counter;

  /** Registers every metric; `defaults` adds process metrics (off in tests). */
  constructor(sources: MetricsSources, defaults = true) {
    const registers = [this.registry];
    if (defaults) collectDefaultMetrics({ register: this.registry, prefix: 'replyx_gateway_' });
    new Gauge({
      name: 'replyx_gateway_connections',
      help: 'Open WebSocket connections by type (admin, widget, site).',
      labelNames: ['type'],
      registers,
      collect() {
        const counts = sources.connections();
        for (const kind of CONNECTION_KINDS) this.set({ type: kind }, counts[kind]);
      },
    });
    new Gauge({
      name: 'replyx_gateway_dialogs',
      help: 'Dialogs with at least one local connection.',
      registers,
      collect() {
        this.set(sources.dialogs());
      },
    });
    new Gauge({
      name: 'replyx_gateway_connection_capacity',
      help: 'Connections this process admits (more close with 4100): MAX_CONNECTIONS, or its soft open-file limit minus the reserved descriptors when that is lower.',
      registers,
      collect() {
        this.set(sources.connectionCapacity());
      },
    });
    const perKind = (name: string, help: string, counts: KindCounts) =>
      new Counter({
        name,
        help,
        labelNames: ['type'],
        registers,
        collect() {
          this.reset();
          for (const kind of CONNECTION_KINDS) this.inc({ type: kind }, counts[kind]);
        },
      });
    perKind('replyx_gateway_events_delivered_total', 'Live event frames written to clients, by connection type (one per recipient).', this.delivered);
    perKind(
      'replyx_gateway_event_recipients_total',
      'Live events addressed to attached, fully resumed clients, by connection type; events_delivered_total below this means attached clients missed live events.',
      this.recipients,
    );
    perKind('replyx_gateway_events_replayed_total', 'Event frames sent from history to clients resuming with since=, by connection type.', this.replayed);
    new Counter({
      name: 'replyx_gateway_closes_total',
      help: 'Connections closed, by close code (codes outside the registry count as "other").',
      labelNames: ['code'],
      registers,
      collect: collectCounts(this.#closeCounts),
    });
    this.#forbidden = new Counter({ name: 'replyx_gateway_domain_forbidden_total', help: 'Connections refused with 4003 (origin not allowed).', registers });
    this.#published = new Counter({ name: 'replyx_gateway_http_publish_total', help: 'POST /internal/publish requests by result.', labelNames: ['result'], registers });
    this.#deprecated = new Counter({
      name: 'replyx_gateway_deprecated_credentials_total',
      help: 'Connections accepted through a deprecated way in: via="query" (token in the URL) or via="legacy" (widget without a session token).',
      labelNames: ['type', 'via'],
      registers,
    });
    new Counter({
      name: 'replyx_gateway_handshakes_total',
      help: 'WebSocket handshakes on the three endpoints by connection type and outcome (accepted, or the close code name it was refused with).',
      labelNames: ['type', 'outcome'],
      registers,
      collect: collectCounts(this.#handshakeCounts),
    });
    this.#resumes = new Counter({ name: 'replyx_gateway_resumes_total', help: 'Connections that resumed with since=, by outcome (replayed, resync, ahead: closed with 4009, failed).', labelNames: ['outcome'], registers });
    this.#resyncs = new Counter({
      name: 'replyx_gateway_resyncs_total',
      help: 'resync frames sent (the client must refetch through the API), by cause (resume_gap, broker_gap).',
      labelNames: ['cause'],
      registers,
    });
    this.#reconnects = new Counter({ name: 'replyx_gateway_broker_reconnects_total', help: 'Times the broker got its Redis subscription back after losing it.', registers });
    this.#accessNotifications = new Counter({ name: 'replyx_gateway_access_notifications_total', help: 'Access change notifications received from Postgres (LISTEN replyx_access_changes).', registers });
    new Gauge({
      name: 'replyx_gateway_access_listener_connected',
      help: "Whether the gateway's LISTEN connection for access changes is up (1) or not (0: changes take effect within ACCESS_CACHE_TTL_MS / REAUTH_INTERVAL_MS).",
      registers,
      collect() {
        this.set(sources.accessListenerConnected() ? 1 : 0);
      },
    });
    this.#latency = new Histogram({
      name: 'replyx_gateway_publish_to_send_seconds',
      help: "Time from an event's ts (set when it was stored) to the gateway sending it to the last local recipient.",
      buckets: [0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    });
    new Gauge({
      name: 'replyx_gateway_dependency_up',
      help: 'Whether a dependency answers the gateway right now (1) or not (0): redis (Redis broker only) and postgres.',
      labelNames: ['dependency'],
      registers,
      async collect() {
        const state = await sources.dependencies();
        this.reset();
        if (state.redis !== undefined) this.set({ dependency: 'redis' }, state.redis ? 1 : 0);
        this.set({ dependency: 'postgres' }, state.postgres ? 1 : 0);
      },
    });
    if (sources.redisRoundTrip) {
      const roundTrip = sources.redisRoundTrip;
      new Gauge({
        name: 'replyx_gateway_redis_roundtrip_seconds',
        help: 'One PING on the command connection, measured at scrape time; NaN while Redis does not answer.',
        registers,
        async collect() {
          this.set((await roundTrip()) ?? Number.NaN);
        },
      });
    }
  }

  /** Counts one close by code. */
  closed(code: number): void {
    const label = KNOWN_CLOSE_CODES.has(code) ? code : OTHER_CODE;
    const count = this.#closeCounts.get(label);
    if (count) count.n += 1;
    else this.#closeCounts.set(label, { labels: { code: label === OTHER_CODE ? 'other' : String(label) }, n: 1 });
    if (code === CloseCodes.DOMAIN_FORBIDDEN.code) this.#forbidden.inc();
  }

  /** Counts one handshake on an endpoint of `kind`: accepted (no code) or refused with a registry close code. */
  handshake(kind: ConnectionKind, refusedWith?: number): void {
    const key = refusedWith === undefined ? kind : `${kind} ${refusedWith}`;
    const count = this.#handshakeCounts.get(key);
    if (count) count.n += 1;
    else {
      const outcome = refusedWith === undefined ? 'accepted' : (HANDSHAKE_OUTCOME.get(refusedWith) ?? 'internal_error');
      this.#handshakeCounts.set(key, { labels: { type: kind, outcome }, n: 1 });
    }
  }

  /** Counts how one resume ended. */
  resumed(outcome: ResumeOutcome): void {
    this.#resumes.inc({ outcome });
  }

  /** Counts `frames` resync frames sent for `cause`. */
  resynced(cause: ResyncCause, frames = 1): void {
    if (frames > 0) this.#resyncs.inc({ cause }, frames);
  }

  /** Counts one broker reconnect (Redis came back). */
  brokerReconnected(): void {
    this.#reconnects.inc();
  }

  /** Counts one access change notification. */
  accessNotified(): void {
    this.#accessNotifications.inc();
  }

  /** Counts one connection accepted with a deprecated credential (query-string token, legacy widget). */
  deprecatedCredential(kind: string, via: string): void {
    this.#deprecated.inc({ type: kind, via });
  }

  /** Records publish-to-send latency of one event. */
  observeLatency(seconds: number): void {
    this.#latency.observe(seconds);
  }

  /** Counts one HTTP publish by outcome. */
  published(result: PublishResult): void {
    this.#published.inc({ result });
  }

  /** The text exposition for GET /metrics. */
  async render(): Promise<string> {
    return this.registry.metrics();
  }

  /** The content type of render(). */
  get contentType(): string {
    return this.registry.contentType;
  }
}
