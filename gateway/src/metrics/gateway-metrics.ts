import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { CONNECTION_KINDS, type KindCounts } from '../connection-kinds.js';

// Prometheus metrics. The hot path (per recipient) touches plain numbers only; prom-client
// reads them at scrape time through collect(), so delivery never hashes label sets.

/** Live values the metrics read at scrape time. */
export interface MetricsSources {
  connections(): KindCounts;
  dialogs(): number;
}

/** The gateway's metrics in their own registry (several gateways can share a test process). */
export class GatewayMetrics {
  readonly registry = new Registry();
  /** Frames sent to clients (events x recipients); incremented without prom-client in the hot path. */
  delivered = 0;
  readonly #closes: Counter<'code'>;
  readonly #forbidden: Counter;
  readonly #latency: Histogram;
  readonly #published: Counter<'result'>;
  readonly #deprecated: Counter<'type' | 'via'>;

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
    const delivered = (): number => this.delivered;
    new Counter({
      name: 'replyx_gateway_events_delivered_total',
      help: 'Event frames sent to clients (one per recipient).',
      registers,
      collect() {
        this.reset();
        this.inc(delivered());
      },
    });
    this.#closes = new Counter({ name: 'replyx_gateway_closes_total', help: 'Connections closed, by close code.', labelNames: ['code'], registers });
    this.#forbidden = new Counter({ name: 'replyx_gateway_domain_forbidden_total', help: 'Connections refused with 4003 (origin not allowed).', registers });
    this.#published = new Counter({ name: 'replyx_gateway_http_publish_total', help: 'POST /internal/publish requests by result.', labelNames: ['result'], registers });
    this.#deprecated = new Counter({
      name: 'replyx_gateway_deprecated_credentials_total',
      help: 'Connections accepted through a deprecated way in: via="query" (token in the URL) or via="legacy" (widget without a session token).',
      labelNames: ['type', 'via'],
      registers,
    });
    this.#latency = new Histogram({
      name: 'replyx_gateway_publish_to_send_seconds',
      help: "Time from an event's ts (set when it was stored) to the gateway sending it to the last local recipient.",
      buckets: [0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    });
  }

  /** Counts one close by code. */
  closed(code: number): void {
    this.#closes.inc({ code: String(code) });
    if (code === 4003) this.#forbidden.inc();
  }

  /** Counts one connection accepted with a deprecated credential (query-string token, legacy widget). */
  deprecatedCredential(kind: string, via: string): void {
    this.#deprecated.inc({ type: kind, via });
  }

  /** Records publish-to-send latency of one event. */
  observeLatency(seconds: number): void {
    this.#latency.observe(seconds);
  }

  /** Counts one HTTP publish by outcome (accepted, bad-request, unauthorized, unavailable). */
  published(result: string): void {
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
