import type { Logger } from 'pino';
import type { ReauthScope } from '../access/access-changes.js';
import type { DialogAccess } from '../access/dialog-access.js';
import { checkGrant, type Grant } from '../access/grant.js';
import type { ClientConnection } from '../connection/client-connection.js';
import type { DialogHub, HubMember } from './dialog-hub.js';

// Live re-authorization: every REAUTH_INTERVAL_MS the access rows of the dialogs that have open
// connections are read again (in batches, one query per ACCESS_BATCH_SIZE dialogs, never one per
// connection) together with the revoked site tokens, and every connection whose grant no longer
// holds is closed with 4001 "access revoked": the dialog moved to another assistant or user, the
// site token was revoked, the widget's (or browser site's) origin left the allowed domains.
// Expiry is the hub's (per second, from the heartbeat tick); this is the slower, database part.
// A database outage keeps open connections as they are (logged) until the next sweep succeeds.
// A change signal (access/access-changes.ts) asks for the same check at once, for the dialogs it
// names only (request()); requests that come while one runs are merged and run right after it.

/** What re-authorization reads. */
export interface ReauthSources {
  /** Access rows of many dialogs; null for dialogs that no longer exist. */
  lookupMany(dialogIds: readonly number[]): Promise<Map<number, DialogAccess | null>>;
  /** The revoked site tokens, re-read by `refresh()` and then asked with `has()`. */
  readonly revoked: { refresh(): Promise<void>; has(jti: string): boolean };
}

/** What re-authorization needs of a connection: its kind and what its credential granted. */
export interface ReauthMember extends HubMember {
  readonly grant: Grant;
}

/** Where connections live and how one is closed for lost access. */
export interface ReauthTarget<M extends ReauthMember = ClientConnection> {
  readonly members: DialogHub<M>;
  /** Closes `conn` with 4001 "access revoked"; false when it was closing already. */
  revoke(conn: M, why: string): boolean;
}

/** Requests merged while a check runs. */
interface PendingScope {
  all: boolean;
  readonly dialogs: Set<number>;
  readonly siteTokens: Set<string>;
}

/** Why a grant no longer holds, or undefined when it still does. */
export function revocationReason(grant: Grant, dialogId: number, access: DialogAccess | null, isRevoked: (jti: string) => boolean): string | undefined {
  if (grant.kind === 'site' && isRevoked(grant.jti)) return 'site token revoked';
  const result = checkGrant(grant, dialogId, access);
  if (result === 'not-found') return access ? 'dialog belongs to another owner now' : 'dialog no longer exists';
  if (result === 'origin') return 'origin no longer in allowed domains';
  return undefined;
}

/** Re-checks open connections every `intervalMs`, driven by the gateway's shared timer. */
export class Reauthorizer<M extends ReauthMember = ClientConnection> {
  readonly #target: ReauthTarget<M>;
  readonly #sources: ReauthSources;
  readonly #intervalMs: number;
  readonly #log: Logger;
  #lastRunAt: number;
  #running = false;
  /** What request() asked for since the running check began (undefined: nothing). */
  #pending: PendingScope | undefined;
  #rechecking = false;

  /** Sweeps every `intervalMs`, the first one `intervalMs` after `startMs`. */
  constructor(target: ReauthTarget<M>, sources: ReauthSources, intervalMs: number, log: Logger, startMs = Date.now()) {
    this.#target = target;
    this.#sources = sources;
    this.#intervalMs = intervalMs;
    this.#log = log;
    this.#lastRunAt = startMs;
  }

  /** Called on every gateway tick: starts a sweep when one is due and none is running. */
  tick(now = Date.now()): void {
    if (this.#running || now - this.#lastRunAt < this.#intervalMs) return;
    this.#lastRunAt = now;
    this.#running = true;
    void this.sweep().finally(() => {
      this.#running = false;
    });
  }

  /** One sweep of every open connection; resolves with how many it closed. Never rejects. */
  sweep(): Promise<number> {
    return this.#check(this.#target.members.dialogIds());
  }

  /** Re-authorizes the connections `scope` names on the next turn; requests made while a check runs are merged into one check after it. */
  request(scope: ReauthScope): void {
    const pending = (this.#pending ??= { all: false, dialogs: new Set(), siteTokens: new Set() });
    if ('all' in scope) pending.all = true;
    else {
      for (const id of scope.dialogs ?? []) pending.dialogs.add(id);
      for (const jti of scope.siteTokens ?? []) pending.siteTokens.add(jti);
    }
    if (this.#rechecking) return;
    this.#rechecking = true;
    setImmediate(() => void this.#runRequests());
  }

  /** Resolves once no requested check is waiting or running (for tests and shutdown). */
  async settled(): Promise<void> {
    while (this.#rechecking) await new Promise((resolve) => setImmediate(resolve));
  }

  async #runRequests(): Promise<void> {
    try {
      while (this.#pending) {
        const pending = this.#pending;
        this.#pending = undefined;
        const dialogIds = pending.all ? this.#target.members.dialogIds() : this.#dialogsOf(pending);
        if (dialogIds.length > 0) await this.#check(dialogIds);
      }
    } finally {
      this.#rechecking = false;
    }
  }

  /** The open dialogs `pending` names, and those with a site connection whose token it names. */
  #dialogsOf(pending: PendingScope): number[] {
    const members = this.#target.members;
    return members.dialogIds().filter(
      (id) => pending.dialogs.has(id) || (pending.siteTokens.size > 0 && [...members.recipients(id, ['site'])].some((c) => c.grant.kind === 'site' && pending.siteTokens.has(c.grant.jti))),
    );
  }

  /** Checks the connections of `dialogIds` against fresh rows and revoked ids; resolves with how many it closed. Never rejects. */
  async #check(dialogIds: readonly number[]): Promise<number> {
    try {
      const [revoked, rows] = await Promise.allSettled([this.#sources.revoked.refresh(), dialogIds.length > 0 ? this.#sources.lookupMany(dialogIds) : Promise.resolve(new Map<number, DialogAccess | null>())]);
      if (revoked.status === 'rejected') this.#log.warn({ err: String(revoked.reason) }, 're-authorization could not read replyx_revoked_site_tokens; using the last list read');
      if (rows.status === 'rejected') {
        this.#log.warn({ err: String(rows.reason), dialogs: dialogIds.length }, 're-authorization could not read replyx_dialog_access; open connections kept until the next sweep');
        return 0;
      }
      const isRevoked = (jti: string) => this.#sources.revoked.has(jti);
      let closed = 0;
      for (const dialogId of dialogIds) {
        const access = rows.value.get(dialogId) ?? null;
        for (const conn of [...this.#target.members.recipients(dialogId)]) {
          const why = revocationReason(conn.grant, dialogId, access, isRevoked);
          if (why !== undefined && this.#target.revoke(conn, why)) closed += 1;
        }
      }
      return closed;
    } catch (err) {
      this.#log.error({ err: String(err) }, 're-authorization failed; open connections kept until the next sweep');
      return 0;
    }
  }
}
