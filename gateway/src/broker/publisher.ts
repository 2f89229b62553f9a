import { readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';
import type { ConnectionKind } from '../connection-kinds.js';
import { dialogChannel, dialogIdempotencyKey, dialogStream, isIdempotencyKey, IDEMPOTENCY_KEY_MAX_LENGTH } from './protocol.js';

/** The replyx Redis function library (see replyx.lua): history append + publish in one atomic, idempotent step. */
export const LIBRARY_SOURCE = readFileSync(new URL('./replyx.lua', import.meta.url), 'utf8');

function fromSource(pattern: RegExp, what: string): string {
  const m = pattern.exec(LIBRARY_SOURCE);
  if (!m) throw new Error(`replyx.lua: ${what} not found`);
  return m[1]!;
}

/** The library's name, as its `#!lua name=` line declares it. */
export const LIBRARY_NAME = fromSource(/^#!lua name=(\w+)/, 'the #!lua name= line');
/** The library's version (`local VERSION` in replyx.lua); an older loaded library is replaced. */
export const LIBRARY_VERSION = Number(fromSource(/^local VERSION = '(\d+)'/m, 'local VERSION'));
/** The function that stores and publishes one event. */
export const PUBLISH_FUNCTION = 'replyx_publish';
/** The function that answers the loaded library's version. */
export const VERSION_FUNCTION = 'replyx_version';

/**
 * The commands a publisher's Redis user needs (with keys `~replyx:*` and channels `&replyx:*`).
 * Redis 7 checks the caller's ACL for every command a function runs, so FCALL alone is not
 * enough: the function's own commands must be allowed too. TIME has no key, so it cannot be
 * narrowed further.
 */
export const PUBLISHER_ACL_COMMANDS = ['fcall', 'get', 'set', 'xadd', 'expire', 'publish', 'time'] as const;

/** One event to publish to a dialog's clients. */
export interface PublishInput {
  readonly dialogId: number;
  readonly type: string;
  readonly data: unknown;
  /** Narrow delivery to these kinds; omitted or empty = everyone on the dialog. */
  readonly audience?: readonly ConnectionKind[];
  /**
   * Publish at most once per key and dialog within the idempotency window: a repeat returns the
   * first event's id and publishes nothing (a message id such as `message:42`, or a client key).
   */
  readonly idempotencyKey?: string;
}

/** What one publish did. */
export interface PublishResult {
  /** The event id (the stream id); for a repeated idempotency key, the first publish's id. */
  readonly id: string;
  /** True when the idempotency key named an earlier publish and nothing was published now. */
  readonly duplicate: boolean;
}

/** History settings the publisher applies with every event. */
export interface PublisherOptions {
  /** Events kept per dialog for resume. Default 1000. */
  readonly historyLength?: number;
  /** Seconds a dialog's history lives after its last event. Default 86400. */
  readonly historyTtlS?: number;
  /** Seconds an idempotency key is remembered after its first publish. Default {@link DEFAULT_IDEMPOTENCY_TTL_S}. */
  readonly idempotencyTtlS?: number;
}

/** Default idempotency window: a retry within an hour of the first publish is recognised. */
export const DEFAULT_IDEMPOTENCY_TTL_S = 3600;

/** Thrown when the library is missing and this Redis user may not load it. */
export class LibraryNotLoadedError extends Error {
  override readonly name = 'LibraryNotLoadedError';
}

const isMissingFunction = (err: unknown): boolean => /function not found/i.test(String((err as Error)?.message ?? err));
const isNoPermission = (err: unknown): boolean => /NOPERM/.test(String((err as Error)?.message ?? err));

/** Why `key` cannot be an idempotency key, or undefined when it can. */
export function idempotencyKeyProblem(key: string): string | undefined {
  return isIdempotencyKey(key) ? undefined : `must be 1-${IDEMPOTENCY_KEY_MAX_LENGTH} characters of A-Z a-z 0-9 _ . : -`;
}

/**
 * Publishes events through Redis for every gateway to deliver, only through FCALL of the
 * `replyx` function library (loaded on first use when missing or older). The backend and the
 * gateway's `POST /internal/publish` both use it; the returned id is the event's stream id.
 */
export class RedisPublisher {
  readonly #redis: Redis;
  readonly #historyLength: string;
  readonly #historyTtlS: string;
  readonly #idempotencyTtlS: string;
  #loaded: Promise<void> | undefined;

  /** Wraps an ioredis client (not one in subscriber mode). */
  constructor(redis: Redis, options: PublisherOptions = {}) {
    this.#redis = redis;
    this.#historyLength = String(options.historyLength ?? 1000);
    this.#historyTtlS = String(options.historyTtlS ?? 86_400);
    this.#idempotencyTtlS = String(options.idempotencyTtlS ?? DEFAULT_IDEMPOTENCY_TTL_S);
  }

  /**
   * Makes sure Redis has this library version or a newer one: FUNCTION LOAD REPLACE only when it
   * is missing or older (checked again on every call: Redis may have restarted without it).
   */
  load(): Promise<void> {
    this.#loaded = undefined;
    return this.#ensure();
  }

  // Publishes share one check; a failed one is retried by the next publish.
  #ensure(): Promise<void> {
    this.#loaded ??= this.#load().catch((err: unknown) => {
      this.#loaded = undefined;
      throw err;
    });
    return this.#loaded;
  }

  async #load(): Promise<void> {
    let loaded: number | undefined;
    try {
      loaded = Number(await this.#redis.fcall(VERSION_FUNCTION, 0));
    } catch (err) {
      if (!isMissingFunction(err)) throw err;
    }
    if (loaded !== undefined && loaded >= LIBRARY_VERSION) return;
    try {
      await this.#redis.function('LOAD', 'REPLACE', LIBRARY_SOURCE);
    } catch (err) {
      if (!isNoPermission(err)) throw err;
      throw new LibraryNotLoadedError(
        `the ${LIBRARY_NAME} function library (version ${LIBRARY_VERSION}) is ${loaded === undefined ? 'not loaded' : `at version ${loaded}`} and this Redis user may not load it; start a gateway (it loads the library) or give one user +function|load`,
      );
    }
  }

  /** Stores and publishes one event atomically; resolves with its id, rejects if Redis did not take it. */
  async publish(event: PublishInput): Promise<string> {
    return (await this.publishEvent(event)).id;
  }

  /** Like {@link publish}, and says whether an earlier publish with the same idempotency key answered. */
  async publishEvent(event: PublishInput): Promise<PublishResult> {
    if (!Number.isSafeInteger(event.dialogId) || event.dialogId < 1) throw new TypeError(`dialogId must be a positive integer, got ${String(event.dialogId)}`);
    const key = event.idempotencyKey;
    if (key !== undefined) {
      const problem = idempotencyKeyProblem(key);
      if (problem) throw new TypeError(`idempotencyKey ${problem}`);
    }
    const keys = [dialogStream(event.dialogId), dialogChannel(event.dialogId)];
    if (key !== undefined) keys.push(dialogIdempotencyKey(event.dialogId, key));
    const args = [String(event.dialogId), event.type, JSON.stringify(event.data ?? null), (event.audience ?? []).join(','), this.#historyLength, this.#historyTtlS, this.#idempotencyTtlS];
    await this.#ensure();
    let reply: unknown;
    try {
      reply = await this.#redis.fcall(PUBLISH_FUNCTION, keys.length, ...keys, ...args);
    } catch (err) {
      // Redis restarted without persistence (or someone flushed functions): load again once.
      if (!isMissingFunction(err)) throw err;
      this.#loaded = undefined;
      await this.load();
      reply = await this.#redis.fcall(PUBLISH_FUNCTION, keys.length, ...keys, ...args);
    }
    const [id, published] = reply as [string, number];
    return { id, duplicate: published === 0 };
  }
}
