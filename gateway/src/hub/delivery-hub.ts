import type { Logger } from 'pino';
import type { Socket } from 'node:net';
import type { Authorized } from '../access/authorize.js';
import type { Broker } from '../broker/broker.js';
import { mergeReplay } from '../broker/merge-replay.js';
import { compareEventIds, eventTs, eventType, RESYNC_FRAME, SINCE_AHEAD_REASON, type BrokerEvent } from '../broker/protocol.js';
import { CloseCodes } from '../close-codes.js';
import { LOG_TAG } from '../connection-kinds.js';
import { ClientConnection, type ConnectionLimits, type ConnectionOwner } from '../connection/client-connection.js';
import { ExpirySchedule } from '../connection/expiry-schedule.js';
import { encodeTextFrame } from '../connection/frame-writer.js';
import { HeartbeatWheel, heartbeatSlices } from '../connection/heartbeat-wheel.js';
import type { GatewayMetrics } from '../metrics/gateway-metrics.js';
import { DialogHub } from './dialog-hub.js';

// The hub delivers (as centrifuge's hub owns broadcast): it holds the open connections, frames
// each broker event once and writes the same bytes to every recipient; it attaches connections,
// replaying history after `since` without gap or duplicate; it runs the heartbeat and the drain.
// It reaches the broker through the Broker interface only; the broker reaches the hub through
// the BrokerHandlers the gateway wires to deliver() and resync(), so neither imports the other.
// The heartbeat tick also closes connections whose token expired (4001 "token expired").

/** The close of a resume whose `since` is newer than the dialog's newest event. */
export const SINCE_AHEAD = { ...CloseCodes.BAD_REQUEST, reason: SINCE_AHEAD_REASON } as const;

export { RESYNC_FRAME };
const RESYNC = Buffer.from(RESYNC_FRAME);

/** The hub's limits (from GatewayConfig; defaults and ranges in config.ts). */
export interface DeliveryHubOptions extends ConnectionLimits {
  /** Shown in every `connected` frame. */
  readonly instanceId: string;
  /** Protocol ping interval; a peer silent for a whole interval is terminated. */
  readonly heartbeatMs: number;
  /** Live events buffered per connection while its history replay runs; beyond it, 4101. */
  readonly maxPendingEvents: number;
  /** After the drain window, how long peers get to answer the 4200 close before being cut. */
  readonly shutdownGraceMs: number;
}

/** Open connections, the dialogs they are on, and delivery of broker events to them. */
export class DeliveryHub implements ConnectionOwner {
  /** Who is on which dialog (the pure membership map, shared with the backend's legacy mode). */
  readonly members = new DialogHub<ClientConnection>();
  readonly limits: ConnectionLimits;
  readonly #connections: HeartbeatWheel<ClientConnection>;
  readonly #expiry = new ExpirySchedule<ClientConnection>();
  readonly #broker: Broker;
  readonly #metrics: GatewayMetrics;
  readonly #log: Logger;
  readonly #maxPending: number;
  readonly #graceMs: number;
  readonly #connectedFrame: Buffer;
  #nextId = 1;

  /** Creates an empty hub delivering through `broker`'s subscriptions. */
  constructor(broker: Broker, options: DeliveryHubOptions, metrics: GatewayMetrics, log: Logger) {
    this.#broker = broker;
    this.#metrics = metrics;
    this.#log = log;
    this.limits = {
      sendBufferBytes: options.sendBufferBytes,
      clientFramesPerSecond: options.clientFramesPerSecond,
      maxParsedFrameBytes: options.maxParsedFrameBytes,
      maxPayloadBytes: options.maxPayloadBytes,
    };
    this.#maxPending = options.maxPendingEvents;
    this.#graceMs = options.shutdownGraceMs;
    this.#connections = new HeartbeatWheel(heartbeatSlices(options.heartbeatMs));
    this.#connectedFrame = Buffer.from(JSON.stringify({ type: 'connected', server: 'ws-gateway', instance: options.instanceId, heartbeat_ms: options.heartbeatMs }));
  }

  /** Open connections (attached or replaying). */
  get size(): number {
    return this.#connections.size;
  }

  /** How many times per heartbeat interval heartbeat() must be called (one slice each). */
  get heartbeatTicks(): number {
    return this.#connections.slices;
  }

  /** Sends a live event to the dialog's connections in its audience, framed once for all of them. */
  deliver(event: BrokerEvent): void {
    const frame = encodeTextFrame(event.json);
    const { recipients, delivered } = this.#metrics;
    let sent = 0;
    for (const conn of this.members.recipients(event.dialogId, event.audience)) {
      if (conn.pending) {
        if (conn.pending.length < this.#maxPending) conn.pending.push(event);
        else {
          // Counted as addressed and not delivered: this client misses the event until it resumes.
          recipients[conn.kind] += 1;
          conn.close(CloseCodes.SLOW_CONSUMER);
        }
        continue;
      }
      if (conn.replayedUpTo !== undefined) {
        if (compareEventIds(event.id, conn.replayedUpTo) <= 0) continue;
        conn.replayedUpTo = undefined;
      }
      recipients[conn.kind] += 1;
      if (conn.sendEncoded(frame)) {
        sent += 1;
        delivered[conn.kind] += 1;
      }
    }
    const ts = eventTs(event.json);
    if (ts !== undefined) this.#metrics.observeLatency(Math.max(0, Date.now() - ts) / 1000);
    if (this.#log.isLevelEnabled('info')) {
      const type = eventType(event.json);
      this.#log.info({ dialog_id: event.dialogId, type, event_id: event.id, recipients: sent }, `Broadcasting message dialog=${event.dialogId} type=${type} recipients=${sent}`);
    }
  }

  /** Tells the dialog's live connections to refetch (the broker lost events); replaying ones learn it from their history read. */
  resync(dialogId: number): void {
    let frames = 0;
    for (const conn of this.members.recipients(dialogId)) if (!conn.pending && conn.send(RESYNC)) frames += 1;
    this.#metrics.resynced('broker_gap', frames);
  }

  /**
   * Takes over an upgraded, authorized socket (and `head`, the bytes read past its request): sends `connected`, joins the dialog (subscribing on the
   * first local join) and, with `since`, replays the history after it merged with the live
   * events that arrive meanwhile; `resync` when `since` is older than the retained history.
   */
  async attach(socket: Socket, head: Buffer, auth: Authorized, ip: string): Promise<void> {
    const conn = new ClientConnection(socket, auth.kind, auth.dialogId, ip, this.#nextId++, this, auth.grant, auth.expiresAt);
    this.#connections.add(conn);
    // Expired between the handshake's check and now (a slow database): no event may reach it.
    if (!this.#expiry.add(conn)) return void conn.close(CloseCodes.TOKEN_EXPIRED);
    conn.send(this.#connectedFrame);
    // Frames the client sent right behind its handshake are read only after `connected` is out.
    conn.start(head);
    // The fields and the line are built only when they are written (a connect storm at "warn").
    if (this.#log.isLevelEnabled('info')) this.#log.info({ conn: conn.id, dialog_id: auth.dialogId, kind: auth.kind, ip, since: auth.since, ...auth.who }, `${LOG_TAG[auth.kind]} connected dialog=${auth.dialogId}`);
    // Buffer live events from the moment of joining, so nothing published during the replay is lost.
    if (auth.since !== undefined) conn.pending = [];
    this.members.join(auth.dialogId, conn);
    // The first local join subscribes; later joins get the same pending-or-done subscription.
    const subscribed = this.#broker.subscribe(auth.dialogId);
    if (auth.since === undefined) {
      subscribed.catch(ignore);
      return;
    }
    try {
      // History is read only after the subscription is live: an event is then either in the
      // history read or arrives live (or both, deduplicated by id) — never neither.
      await subscribed;
      const result = await this.#broker.history(auth.dialogId, auth.since);
      if (!conn.pending) return; // closed meanwhile
      const buffered = conn.pending;
      conn.pending = null;
      let replay: readonly BrokerEvent[];
      if (result.status === 'ahead') {
        // An id this dialog never issued (another stack's, or made up): live events would all be "older" than it.
        this.#metrics.resumed('ahead');
        this.#log.warn({ conn: conn.id, dialog_id: auth.dialogId, since: auth.since, newest: result.newest }, `${LOG_TAG[auth.kind]} since is ahead of the dialog's newest event; closing with 4009`);
        conn.close(SINCE_AHEAD);
        return;
      }
      if (result.status === 'gap') {
        conn.send(RESYNC);
        this.#metrics.resumed('resync');
        this.#metrics.resynced('resume_gap');
        replay = mergeReplay([], buffered, undefined);
        conn.replayedUpTo = replay.at(-1)?.id;
      } else {
        // History holds every audience; buffered live events were already narrowed by the hub.
        const mine = result.events.filter((e) => e.audience.length === 0 || e.audience.includes(conn.kind));
        replay = mergeReplay(mine, buffered, auth.since);
        conn.replayedUpTo = replay.at(-1)?.id ?? auth.since;
        this.#metrics.resumed('replayed');
      }
      let sent = 0;
      for (const event of replay) {
        if (!conn.send(Buffer.from(event.json))) break;
        sent += 1;
      }
      this.#metrics.replayed[conn.kind] += sent;
    } catch (err) {
      this.#metrics.resumed('failed');
      this.#log.error({ conn: conn.id, dialog_id: auth.dialogId, err: String(err) }, `${LOG_TAG[auth.kind]} history replay failed; closing with 1011`);
      conn.pending = null;
      conn.close(CloseCodes.INTERNAL_ERROR);
    }
  }

  /**
   * One heartbeat tick: pings the next slice of connections, terminating those that never
   * answered, and closes every connection whose token expired since the last tick.
   */
  heartbeat(now = Date.now()): void {
    for (const conn of this.#connections.nextSlice()) conn.heartbeat();
    this.#expiry.sweep(this.#expire, now);
  }

  readonly #expire = (conn: ClientConnection): void => {
    this.#log.info({ conn: conn.id, dialog_id: conn.dialogId, kind: conn.kind, expires_at: conn.expiresAt }, `${LOG_TAG[conn.kind]} token expired; closing with 4001`);
    conn.close(CloseCodes.TOKEN_EXPIRED);
  };

  /** Closes a connection whose access was revoked (4001 "access revoked"), logging why; false when it was closing already. */
  revoke(conn: ClientConnection, why: string): boolean {
    if (conn.closeCode !== undefined) return false;
    this.#log.warn({ conn: conn.id, dialog_id: conn.dialogId, kind: conn.kind, reason: why }, `${LOG_TAG[conn.kind]} access revoked (${why}); closing with 4001`);
    conn.close(CloseCodes.ACCESS_REVOKED);
    return true;
  }

  /** Connections waiting for their token's expiry. */
  get expiring(): number {
    return this.#expiry.size;
  }

  /**
   * Closes every connection with 4200 in random order, spread evenly over `windowMs` (clients
   * reconnect at different moments), then waits the shutdown grace and cuts peers that never
   * answered the close.
   */
  async drain(windowMs: number): Promise<void> {
    const victims = [...this.#connections];
    for (let i = victims.length - 1; i > 0; i -= 1) {
      const j = Math.floor(Math.random() * (i + 1));
      [victims[i], victims[j]] = [victims[j]!, victims[i]!];
    }
    this.#log.info({ connections: victims.length, window_ms: windowMs }, 'draining: closing connections with 4200');
    let closedCount = 0;
    const start = Date.now();
    while (closedCount < victims.length) {
      const elapsed = Date.now() - start;
      const target = windowMs <= 0 ? victims.length : Math.min(victims.length, Math.ceil((victims.length * elapsed) / windowMs));
      for (; closedCount < target; closedCount += 1) victims[closedCount]!.close(CloseCodes.DRAINING);
      if (closedCount < victims.length) await sleep(Math.min(50, Math.max(5, windowMs / 100)));
    }
    const deadline = Date.now() + this.#graceMs;
    while (this.#connections.size > 0 && Date.now() < deadline) await sleep(20);
    for (const conn of this.#connections) conn.terminate();
  }

  /** ConnectionOwner: counts a close the gateway initiated and logs why, by code. */
  onServerClose(conn: ClientConnection, code: number): void {
    this.#metrics.closed(code);
    const fields = { conn: conn.id, dialog_id: conn.dialogId, kind: conn.kind, ip: conn.ip };
    const tag = LOG_TAG[conn.kind];
    if (code === CloseCodes.SLOW_CONSUMER.code) {
      this.#log.warn({ ...fields, buffered: conn.bufferedAmount, code }, `${tag} slow consumer: more than ${this.limits.sendBufferBytes} bytes unsent; closing with 4101`);
    } else if (code === CloseCodes.OVER_LIMIT.code) {
      this.#log.warn(fields, `${tag} client frame flood; closing with 4100`);
    } else if (code === 1006) {
      this.#log.info({ conn: conn.id, dialog_id: conn.dialogId, kind: conn.kind }, `${tag} cleanup: dead connection terminated (no pong)`);
    }
  }

  /** ConnectionOwner: forgets a closed connection; the dialog's last local leave unsubscribes. */
  onConnectionClosed(conn: ClientConnection, code: number): void {
    this.#connections.delete(conn);
    this.#expiry.delete(conn);
    if (this.members.leave(conn.dialogId, conn)) this.#broker.unsubscribe(conn.dialogId);
    if (conn.closeCode === undefined) this.#metrics.closed(code);
    conn.pending = null;
    if (this.#log.isLevelEnabled('info')) {
      this.#log.info({ conn: conn.id, dialog_id: conn.dialogId, kind: conn.kind, code, duration_ms: Date.now() - conn.connectedAt }, `${LOG_TAG[conn.kind]} disconnected dialog=${conn.dialogId} code=${code}`);
    }
  }
}

/** A subscription failure is logged and retried by the broker; the connection need not wait for it. */
function ignore(): void {}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
