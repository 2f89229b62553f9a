import type { Logger } from 'pino';
import type { DialogAccess } from '../access/dialog-access.js';
import { checkGrant, type Grant } from '../access/grant.js';
import type { ClientConnection } from '../connection/client-connection.js';
import type { DialogHub } from './dialog-hub.js';

// Live re-authorization: every REAUTH_INTERVAL_MS the access rows of the dialogs that have open
// connections are read again (in batches, one query per ACCESS_BATCH_SIZE dialogs, never one per
// connection) together with the revoked site tokens, and every connection whose grant no longer
// holds is closed with 4001 "access revoked": the dialog moved to another assistant or user, the
// site token was revoked, the widget's (or browser site's) origin left the allowed domains.
// Expiry is the hub's (per second, from the heartbeat tick); this is the slower, database part.
// A database outage keeps open connections as they are (logged) until the next sweep succeeds.

/** What re-authorization reads. */
export interface ReauthSources {
  /** Access rows of many dialogs; null for dialogs that no longer exist. */
  lookupMany(dialogIds: readonly number[]): Promise<Map<number, DialogAccess | null>>;
  /** The revoked site tokens, re-read by `refresh()` and then asked with `has()`. */
  readonly revoked: { refresh(): Promise<void>; has(jti: string): boolean };
}

/** Where connections live and how one is closed for lost access. */
export interface ReauthTarget {
  readonly members: DialogHub<ClientConnection>;
  /** Closes `conn` with 4001 "access revoked"; false when it was closing already. */
  revoke(conn: ClientConnection, why: string): boolean;
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
export class Reauthorizer {
  readonly #target: ReauthTarget;
  readonly #sources: ReauthSources;
  readonly #intervalMs: number;
  readonly #log: Logger;
  #lastRunAt: number;
  #running = false;

  /** Sweeps every `intervalMs`, the first one `intervalMs` after `startMs`. */
  constructor(target: ReauthTarget, sources: ReauthSources, intervalMs: number, log: Logger, startMs = Date.now()) {
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
    void this.sweep();
  }

  /** One sweep; resolves with how many connections it closed. Never rejects. */
  async sweep(): Promise<number> {
    this.#running = true;
    try {
      const dialogIds = this.#target.members.dialogIds();
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
    } finally {
      this.#running = false;
    }
  }
}
