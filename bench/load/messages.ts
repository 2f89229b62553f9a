// The IPC messages between the orchestrator (bench/harness.ts) and its load processes
// (bench/load/generator.ts, bench/load/publisher.ts). Plain JSON over the fork channel.

/** How a load process speaks to a system: raw WebSocket or the Socket.IO client. */
export type ClientKind = 'ws' | 'socketio';

/** One connection to open. */
export interface ConnectTarget {
  readonly url: string;
  /** The dialog this connection follows (the expected-event count is per dialog). */
  readonly dialog: number;
  /** Origin header to send. */
  readonly origin?: string;
  /** Subprotocols to offer (our gateway: `replyx.v1` and `replyx.token.<JWT>`). */
  readonly protocols?: readonly string[];
  /** Loopback source address to connect from (one address has only ~28,000 ephemeral ports). */
  readonly localAddress?: string;
}

/** When a connection counts as established. */
export type ReadyOn =
  /** The WebSocket handshake completed (peers that accept everyone). */
  | 'open'
  /** The first frame arrived: the gateway sends `connected` only after auth and routing. */
  | 'first-message';

/** Orchestrator -> generator. */
export type GeneratorCommand =
  | {
      readonly op: 'connect';
      readonly client: ClientKind;
      readonly targets: readonly ConnectTarget[];
      readonly readyOn: ReadyOn;
      /** Handshakes in flight at once. */
      readonly concurrency: number;
      /** Give up on a connection that is not ready after this long. */
      readonly timeoutMs: number;
    }
  | { readonly op: 'reset' }
  | { readonly op: 'count' }
  /** Heartbeat pings each open connection received since the last `restart: true` (which zeroes them). */
  | { readonly op: 'heartbeats'; readonly restart: boolean }
  | { readonly op: 'stats'; readonly expectedPerDialog: Readonly<Record<number, number>> }
  | { readonly op: 'close' }
  | { readonly op: 'exit' };

/** Outcome of a connect command. */
export interface ConnectResult {
  readonly op: 'connected';
  readonly ok: number;
  readonly failed: number;
  readonly elapsedMs: number;
  /** Up to a few distinct failure reasons, for the report. */
  readonly errors: readonly string[];
}

/** Counters and latencies since the last reset. */
export interface GeneratorStats {
  readonly op: 'stats';
  /** Bench events received over all connections. */
  readonly received: number;
  /** Expected minus received, summed per connection (never negative per connection). */
  readonly lost: number;
  /** Received beyond expected (duplicates), summed per connection. */
  readonly extra: number;
  /** Connections that closed after being ready. */
  readonly dropped: number;
  /** Publish -> receive latency in microseconds, HDR histogram, compressed base64. */
  readonly histogram: string;
  readonly firstReceiveMs: number;
  readonly lastReceiveMs: number;
}

/** Protocol pings the server sent to this generator's open connections (its heartbeat). */
export interface HeartbeatCounts {
  readonly op: 'heartbeats';
  /** Open connections by pings received: `{ 2: 4750, 3: 250 }`. */
  readonly connectionsByPings: Readonly<Record<number, number>>;
  /** Connections closed by the server since the last reset. */
  readonly dropped: number;
}

/** Generator -> orchestrator. */
export type GeneratorReply =
  | ConnectResult
  | GeneratorStats
  | HeartbeatCounts
  /** Bench events received since the last reset (cheap: polled while waiting for delivery). */
  | { readonly op: 'count'; readonly received: number }
  | { readonly op: 'reset-done' } | { readonly op: 'closed' } | { readonly op: 'error'; readonly message: string };

/** How the publisher reaches a system. */
export type PublishTarget =
  /** Our gateway: FCALL replyx_publish through Redis (what a backend does). */
  | { readonly kind: 'redis-lua'; readonly redisUrl: string }
  /** The bare ws floor: a publish WebSocket into the server. */
  | { readonly kind: 'ws-floor'; readonly url: string }
  /** Pushpin's HTTP publish API. */
  | { readonly kind: 'pushpin-http'; readonly url: string }
  /** Socket.IO: an emitter-side server whose Redis adapter broadcasts to the room. */
  | { readonly kind: 'socketio-redis'; readonly redisUrl: string };

/** What to publish. Events go round-robin to dialogs `firstDialog .. firstDialog+dialogs-1`. */
export interface PublishPlan {
  readonly events: number;
  readonly firstDialog: number;
  readonly dialogs: number;
  /** Events per second; 0 publishes as fast as `maxInFlight` allows. */
  readonly ratePerS: number;
  /** Publish batches awaiting acknowledgement at once. */
  readonly maxInFlight: number;
  /** Most events in one batch (one tick, one HTTP request for Pushpin). */
  readonly batchMax: number;
  readonly textBytes: number;
  /** Stop publishing after this long even if events remain. */
  readonly maxDurationMs: number;
}

/** Orchestrator -> publisher. */
export type PublisherCommand = { readonly op: 'run'; readonly target: PublishTarget; readonly plan: PublishPlan } | { readonly op: 'exit' };

/** Publisher -> orchestrator. */
export type PublisherReply =
  | {
      readonly op: 'done';
      readonly published: number;
      readonly failed: number;
      /** Events accepted per dialog id. */
      readonly perDialog: Readonly<Record<number, number>>;
      readonly firstPublishMs: number;
      readonly lastPublishMs: number;
      readonly errors: readonly string[];
    }
  | { readonly op: 'ready' }
  | { readonly op: 'error'; readonly message: string };
