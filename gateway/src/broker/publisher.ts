import { readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';
import type { ConnectionKind } from '../connection-kinds.js';
import { dialogChannel, dialogStream } from './protocol.js';

/** The publish script (see publish.lua): history append + publish in one atomic step. */
export const PUBLISH_LUA = readFileSync(new URL('./publish.lua', import.meta.url), 'utf8');

/** One event to publish to a dialog's clients. */
export interface PublishInput {
  readonly dialogId: number;
  readonly type: string;
  readonly data: unknown;
  /** Narrow delivery to these kinds; omitted or empty = everyone on the dialog. */
  readonly audience?: readonly ConnectionKind[];
}

/** History settings the publisher applies with every event. */
export interface PublisherOptions {
  /** Events kept per dialog for resume. Default 1000. */
  readonly historyLength?: number;
  /** Seconds a dialog's history lives after its last event. Default 86400. */
  readonly historyTtlS?: number;
}

type RedisWithPublish = Redis & {
  replyxPublish(stream: string, channel: string, dialogId: string, type: string, data: string, audience: string, maxLen: string, ttl: string): Promise<string>;
};

/**
 * Publishes events through Redis for every gateway to deliver. The backend and the gateway's
 * `POST /internal/publish` both use it; the returned id is the event's stream id.
 */
export class RedisPublisher {
  readonly #redis: RedisWithPublish;
  readonly #historyLength: number;
  readonly #historyTtlS: number;

  /** Wraps an ioredis client (not one in subscriber mode). */
  constructor(redis: Redis, options: PublisherOptions = {}) {
    if (!('replyxPublish' in redis)) redis.defineCommand('replyxPublish', { numberOfKeys: 2, lua: PUBLISH_LUA });
    this.#redis = redis as RedisWithPublish;
    this.#historyLength = options.historyLength ?? 1000;
    this.#historyTtlS = options.historyTtlS ?? 86_400;
  }

  /** Stores and publishes one event atomically; resolves with its id, rejects if Redis did not take it. */
  async publish(event: PublishInput): Promise<string> {
    if (!Number.isSafeInteger(event.dialogId) || event.dialogId < 1) throw new TypeError(`dialogId must be a positive integer, got ${String(event.dialogId)}`);
    const data = JSON.stringify(event.data ?? null);
    return this.#redis.replyxPublish(
      dialogStream(event.dialogId),
      dialogChannel(event.dialogId),
      String(event.dialogId),
      event.type,
      data,
      (event.audience ?? []).join(','),
      String(this.#historyLength),
      String(this.#historyTtlS),
    );
  }
}
