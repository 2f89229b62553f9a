import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry, Counter, Gauge, Histogram, Registry, collectDefaultMetrics, type PrometheusContentType } from 'prom-client';
import { CONNECTION_KINDS, type KindCounts } from '@replyx/gateway/connection-kinds';

// The backend's Prometheus metrics. Each worker counts its own requests and publishes in a
// registry that prom-client's AggregatorRegistry can collect over IPC; the cluster primary
// sums the workers and adds what only it knows (how many workers run, the outbox), so one
// scrape of GET /metrics on the backend port describes the whole cluster whichever worker
// answers it. Labels take values from closed sets (route templates, methods, statuses): never
// a dialog, message or user id.

/** Route label of requests that match no route of the API. */
export const UNMATCHED_ROUTE = 'unmatched';

/** Methods counted under their own label value; anything else counts as "other". */
const METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

/** IPC message a worker sends to ask the primary for the cluster's metrics. */
const METRICS_REQUEST = 'replyx:metrics-request';
/** The primary's answer. */
const METRICS_RESPONSE = 'replyx:metrics-response';

interface MetricsRequest {
  readonly type: typeof METRICS_REQUEST;
  readonly id: number;
}
interface MetricsResponse {
  readonly type: typeof METRICS_RESPONSE;
  readonly id: number;
  readonly text?: string;
  readonly error?: string;
}

/** How long a worker waits for the primary's aggregated metrics (prom-client's own IPC timeout is 5 s). */
const CLUSTER_METRICS_TIMEOUT_MS = 6000;

/** One worker's metrics. */
export class WorkerMetrics {
  readonly registry: Registry;
  readonly #requests: Counter<'method' | 'route' | 'status'>;
  readonly #duration: Histogram<'method' | 'route'>;
  readonly #published: Counter;
  readonly #publishFailures: Counter;
  readonly #notRouted: Counter;
  #nextRequest = 1;
  readonly #pending = new Map<number, (r: MetricsResponse) => void>();

  /**
   * Registers the worker's metrics; `defaults` adds Node process metrics (summed over the
   * workers). `legacyConnections` reads the legacy /ws/ sockets of this worker by type.
   */
  constructor(options: { readonly defaults?: boolean; readonly legacyConnections?: () => KindCounts } = {}) {
    // An AggregatorRegistry (a Registry) answers the primary's collection requests over IPC.
    const registry = new AggregatorRegistry<PrometheusContentType>();
    AggregatorRegistry.setRegistries([registry]);
    this.registry = registry;
    const registers = [registry];
    if (options.defaults ?? true) collectDefaultMetrics({ register: registry, prefix: 'replyx_backend_' });
    this.#requests = new Counter({ name: 'replyx_backend_http_requests_total', help: 'HTTP requests by method, route template and status.', labelNames: ['method', 'route', 'status'], registers });
    this.#duration = new Histogram({
      name: 'replyx_backend_http_request_duration_seconds',
      help: 'HTTP request latency by method and route template, from the request to the last byte of the answer.',
      labelNames: ['method', 'route'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.#published = new Counter({ name: 'replyx_backend_events_published_total', help: 'Stored messages published to the gateways (Redis).', registers });
    this.#publishFailures = new Counter({
      name: 'replyx_backend_publish_failures_total',
      help: 'Publishes that failed (the message is stored but no event reached the gateways yet).',
      registers,
    });
    this.#notRouted = new Counter({
      name: 'replyx_backend_ws_not_routed_handshakes_total',
      help: 'Legacy /ws/ handshakes refused with 4102 because they reached the backend by a route the stack plan does not render (nginx.conf edited by hand); rising while wsRoute is gateway: clients are kept off the backend and retry until the route is repaired.',
      registers,
    });
    const legacy = options.legacyConnections;
    if (legacy) {
      new Gauge({
        name: 'replyx_backend_ws_connections',
        help: 'WebSockets the backend serves itself (legacy /ws/ mode, wsRoute=backend), by type; more than 0 with more than one worker is the desync.',
        labelNames: ['type'],
        registers,
        collect() {
          const counts = legacy();
          for (const kind of CONNECTION_KINDS) this.set({ type: kind }, counts[kind]);
        },
      });
    }
    process.on('message', (m: unknown) => {
      if (!isMessage<MetricsResponse>(m, METRICS_RESPONSE)) return;
      this.#pending.get(m.id)?.(m);
    });
  }

  /** Records one answered request. */
  observeRequest(method: string | undefined, route: string, status: number, seconds: number): void {
    const m = method !== undefined && METHODS.has(method) ? method : 'other';
    this.#requests.inc({ method: m, route, status: String(status) });
    this.#duration.observe({ method: m, route }, seconds);
  }

  /** Counts one published message. */
  published(): void {
    this.#published.inc();
  }

  /** Counts one legacy /ws/ handshake refused because the stack plan does not route /ws/ to the backend. */
  notRouted(): void {
    this.#notRouted.inc();
  }

  /** Counts one failed publish (the relay of a transactional outbox counts its failures here too). */
  publishFailed(): void {
    this.#publishFailures.inc();
  }

  /**
   * The text exposition for GET /metrics: the whole cluster's, aggregated by the primary, when
   * this worker runs under one; this worker's alone otherwise (a worker started on its own).
   */
  async render(): Promise<string> {
    if (!cluster.isWorker || !process.send) return this.registry.metrics();
    const id = this.#nextRequest++;
    const answer = new Promise<MetricsResponse>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`the cluster primary did not answer within ${CLUSTER_METRICS_TIMEOUT_MS} ms`));
      }, CLUSTER_METRICS_TIMEOUT_MS);
      this.#pending.set(id, (r) => {
        clearTimeout(timer);
        this.#pending.delete(id);
        resolve(r);
      });
    });
    process.send({ type: METRICS_REQUEST, id } satisfies MetricsRequest);
    const r = await answer;
    if (r.text === undefined) throw new Error(r.error ?? 'no metrics from the cluster primary');
    return r.text;
  }

  /** The content type of render(). */
  get contentType(): string {
    return this.registry.contentType;
  }
}

/** The transactional outbox as the primary reports it: stored messages not yet published. */
export interface OutboxState {
  /** Messages stored and not published. */
  readonly pending: number;
  /** Age of the oldest of them in seconds; 0 when none. */
  readonly oldestAgeSeconds: number;
}

/** What the primary's metrics read at scrape time. */
export interface PrimarySources {
  /** Workers listening right now. */
  workers(): number;
  /** BACKEND_WORKERS. */
  readonly configuredWorkers: number;
  /** The outbox; rejects when the database cannot say (the gauges then read NaN). */
  outbox(): Promise<OutboxState>;
}

/** The cluster primary's metrics and the aggregation of its workers'. */
export class PrimaryMetrics {
  readonly #registry = new Registry();
  readonly #workers = new AggregatorRegistry<PrometheusContentType>();
  readonly #sources: PrimarySources;
  #outbox: OutboxState | undefined;

  /** Registers the primary's own gauges. */
  constructor(sources: PrimarySources) {
    const registers = [this.#registry];
    new Gauge({
      name: 'replyx_backend_workers',
      help: 'Worker processes listening right now.',
      registers,
      collect() {
        this.set(sources.workers());
      },
    });
    new Gauge({
      name: 'replyx_backend_workers_configured',
      help: 'Worker processes the backend is configured to run (BACKEND_WORKERS).',
      registers,
      collect() {
        this.set(sources.configuredWorkers);
      },
    });
    // One query answers both outbox gauges: render() reads the outbox, collect() only reports it.
    const outbox = () => this.#outbox;
    new Gauge({
      name: 'replyx_backend_outbox_pending_messages',
      help: 'Messages stored but not yet published to the gateways; NaN when the database does not answer.',
      registers,
      collect() {
        this.set(outbox()?.pending ?? Number.NaN);
      },
    });
    new Gauge({
      name: 'replyx_backend_outbox_lag_seconds',
      help: 'Age of the oldest message stored but not yet published (0 when every message is published); NaN when the database does not answer.',
      registers,
      collect() {
        this.set(outbox()?.oldestAgeSeconds ?? Number.NaN);
      },
    });
    this.#sources = sources;
  }

  /** The workers' metrics summed, followed by the primary's own. */
  async render(): Promise<string> {
    const [workers, outbox] = await Promise.all([this.#workers.clusterMetrics(), this.#sources.outbox().catch(() => undefined)]);
    this.#outbox = outbox;
    const own = await this.#registry.metrics();
    return `${workers.trimEnd()}\n\n${own}`;
  }

  /** Answers metrics requests from `worker` (call once per forked worker). */
  serve(worker: Worker): void {
    worker.on('message', (m: unknown) => {
      if (!isMessage<MetricsRequest>(m, METRICS_REQUEST)) return;
      this.render().then(
        (text) => worker.isConnected() && worker.send({ type: METRICS_RESPONSE, id: m.id, text } satisfies MetricsResponse),
        (err: unknown) => worker.isConnected() && worker.send({ type: METRICS_RESPONSE, id: m.id, error: String(err) } satisfies MetricsResponse),
      );
    });
  }
}

function isMessage<T extends { type: string }>(m: unknown, type: T['type']): m is T {
  return typeof m === 'object' && m !== null && (m as { type?: unknown }).type === type;
}
