import type { BrokerEvent } from './protocol.js';
import type { PublishInput } from './publisher.js';

// What the gateway needs from a broker. Two implementations: Redis (N replicas) and memory
// (one process, tests and single-node setups).

/**
 * History after an id: the events; `gap` when the id is older than what is retained (or nothing
 * is); `ahead` when the id is newer than the newest event (the client's id was never issued here).
 */
export type HistoryResult =
  | { readonly status: 'ok'; readonly events: readonly BrokerEvent[] }
  | { readonly status: 'gap' }
  | { readonly status: 'ahead'; readonly newest: string };

/** Callbacks a broker drives. */
export interface BrokerHandlers {
  /** A live event for a dialog with local subscribers. */
  onEvent(event: BrokerEvent): void;
  /** The broker lost events of a dialog (e.g. Redis restarted empty): clients must resync. */
  onResync(dialogId: number): void;
  /** The broker's connection came back after it was lost (counted in the metrics). */
  onReconnect?(): void;
}

/** Fan-out between publishers and gateways. */
export interface Broker {
  /** "redis" or "memory". */
  readonly kind: 'redis' | 'memory';
  /** Connects; resolves when ready to subscribe and publish. */
  start(): Promise<void>;
  /** Starts receiving a dialog's events (first local join); resolves once the subscription is live. */
  subscribe(dialogId: number): Promise<void>;
  /** Stops receiving a dialog's events (last local leave). */
  unsubscribe(dialogId: number): void;
  /** Retained events after `sinceId`; a gap when `sinceId` is older than the history; ahead when newer than its newest event. */
  history(dialogId: number, sinceId: string): Promise<HistoryResult>;
  /** Id of the dialog's newest retained event. */
  lastEventId(dialogId: number): Promise<string | undefined>;
  /** Stores and publishes one event; resolves with its id, rejects when it was not stored. */
  publish(input: PublishInput): Promise<string>;
  /** True when publish and delivery work right now. */
  isReady(): boolean;
  /** Dialogs currently subscribed. */
  readonly subscribedCount: number;
  /** Disconnects. */
  close(): Promise<void>;
}
