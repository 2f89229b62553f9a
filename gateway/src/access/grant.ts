import { isHostAllowed } from '../origin/allowed-domains.js';
import type { DialogAccess } from './dialog-access.js';

// What an accepted connection was granted, kept with the connection so the same check can run
// again later: at the handshake (refusals become 4004/4003) and every REAUTH_INTERVAL_MS while it
// is open (a failure becomes 4001 "access revoked"). One small object per connection.

/** The credential's claims the access check needs (`dialogId`: the token names one dialog). */
export type Grant =
  | { readonly kind: 'admin'; readonly userId: number }
  | { readonly kind: 'site'; readonly userId: number; readonly assistantId: number; readonly dialogId?: number; readonly jti: string; readonly originHost?: string }
  | { readonly kind: 'widget'; readonly assistantId: number; readonly originHost: string; readonly dialogId?: number };

/** The outcome of checking a grant against a dialog's access row. */
export type GrantCheck = 'ok' | 'not-found' | 'origin';

/**
 * Checks `grant` for `dialogId` against its access row (null: no such dialog). "not-found"
 * covers a missing dialog and one owned by someone else alike, so refusals reveal no owner.
 */
export function checkGrant(grant: Grant, dialogId: number, access: DialogAccess | null): GrantCheck {
  if (!access || access.dialogId !== dialogId) return 'not-found';
  switch (grant.kind) {
    case 'admin':
      return access.userId === grant.userId ? 'ok' : 'not-found';
    case 'site':
      if (access.assistantId !== grant.assistantId || access.userId !== grant.userId) return 'not-found';
      if (grant.dialogId !== undefined && grant.dialogId !== dialogId) return 'not-found';
      return grant.originHost === undefined || isHostAllowed(grant.originHost, access.allowedDomains) ? 'ok' : 'origin';
    case 'widget':
      // Session tokens name their dialog; only the legacy handshake has none.
      if (access.assistantId !== grant.assistantId || (grant.dialogId !== undefined && grant.dialogId !== dialogId)) return 'not-found';
      return isHostAllowed(grant.originHost, access.allowedDomains) ? 'ok' : 'origin';
  }
}
