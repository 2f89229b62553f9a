import type { IncomingMessage } from 'node:http';
import { CloseCodes, type CloseCodeInfo } from '../close-codes.js';
import type { TokenVerifier } from '../auth/tokens.js';
import { positiveId } from '../auth/tokens.js';
import { isEventId } from '../broker/protocol.js';
import type { ConnectionKind } from '../connection-kinds.js';
import type { EndpointMatch } from '../connection/endpoints.js';
import { isHostAllowed, originHost, widgetOrigin } from '../origin/allowed-domains.js';
import type { DialogAccess } from './dialog-access.js';

// Decides whether a WebSocket request may attach to its dialog. Order matters for what the
// client learns: malformed parameters (4009) before credentials (4001), ownership (4004)
// before origin (4003), so a stranger cannot probe which domains an assistant allows.

/** Looks a dialog's access row up (DialogAccessStore in production). */
export type AccessLookup = (dialogId: number) => Promise<DialogAccess | null>;

/** An accepted request. */
export interface Authorized {
  readonly ok: true;
  readonly kind: ConnectionKind;
  readonly dialogId: number;
  readonly since: string | undefined;
  /** Who it is, for the connect log line (ids and origin only, never tokens). */
  readonly who: Readonly<Record<string, string | number>>;
}

/** A refused request: the close code and a detail for the log. */
export interface Refused {
  readonly ok: false;
  readonly close: CloseCodeInfo;
  readonly detail: string;
  readonly kind: ConnectionKind;
  readonly dialogId?: number;
  /** Set for 4003 so the WEBSOCKET_4003_ERROR line names the assistant and origin. */
  readonly assistantId?: number;
  readonly origin?: string;
}

/** Authorizes one WebSocket request; rejects only on infrastructure errors (database down). */
export async function authorize(match: EndpointMatch, req: IncomingMessage, tokens: TokenVerifier, lookup: AccessLookup): Promise<Authorized | Refused> {
  const { kind, params } = match;
  const refuse = (close: CloseCodeInfo, detail: string, extra: Partial<Refused> = {}): Refused => ({ ok: false, close, detail, kind, ...extra });
  const dialogId = /^\d{1,16}$/.test(match.dialogSegment) ? positiveId(match.dialogSegment) : undefined;
  if (dialogId === undefined) return refuse(CloseCodes.BAD_REQUEST, 'dialog id must be a positive integer');
  const since = params.get('since') ?? undefined;
  if (since !== undefined && !isEventId(since)) return refuse(CloseCodes.BAD_REQUEST, 'since must be an event id such as 1732780000000-0', { dialogId });
  const originHeader = typeof req.headers.origin === 'string' ? req.headers.origin : undefined;

  if (kind === 'admin') {
    const token = await tokens.verifyAdmin(params.get('token'));
    if (!token.ok) return refuse(CloseCodes.UNAUTHORIZED, `admin token ${token.reason}`, { dialogId });
    const access = await lookup(dialogId);
    if (!access || access.userId !== token.value.userId) return refuse(CloseCodes.DIALOG_NOT_FOUND, access ? 'dialog belongs to another user' : 'no such dialog', { dialogId });
    return { ok: true, kind, dialogId, since, who: { user_id: token.value.userId } };
  }

  if (kind === 'site') {
    const token = await tokens.verifySite(params.get('site_token'));
    if (!token.ok) return refuse(CloseCodes.UNAUTHORIZED, `site token ${token.reason}`, { dialogId });
    const { assistantId, userId } = token.value;
    const access = await lookup(dialogId);
    if (!access || access.assistantId !== assistantId || access.userId !== userId) {
      return refuse(CloseCodes.DIALOG_NOT_FOUND, access ? 'dialog belongs to another assistant' : 'no such dialog', { dialogId });
    }
    // Server-to-server clients send no Origin; browsers always do, and then it must be allowed.
    if (originHeader !== undefined) {
      const host = originHost(originHeader);
      if (!host || !isHostAllowed(host, access.allowedDomains)) {
        return refuse(CloseCodes.DOMAIN_FORBIDDEN, 'origin not in allowed domains', { dialogId, assistantId, origin: originHeader });
      }
    }
    return { ok: true, kind, dialogId, since, who: { assistant_id: assistantId, ...(originHeader ? { origin: originHeader } : {}) } };
  }

  const assistantId = positiveId(params.get('assistant_id') ?? undefined);
  if (assistantId === undefined) return refuse(CloseCodes.BAD_REQUEST, 'assistant_id must be a positive integer', { dialogId });
  const access = await lookup(dialogId);
  if (!access || access.assistantId !== assistantId) return refuse(CloseCodes.DIALOG_NOT_FOUND, access ? 'dialog belongs to another assistant' : 'no such dialog', { dialogId });
  const choice = widgetOrigin(params.get('parent_origin'), originHeader);
  if (!choice.ok) return refuse(CloseCodes.DOMAIN_FORBIDDEN, `origin ${choice.reason}`, { dialogId, assistantId, origin: params.get('parent_origin') ?? originHeader ?? '' });
  if (!isHostAllowed(choice.host, access.allowedDomains)) {
    return refuse(CloseCodes.DOMAIN_FORBIDDEN, 'origin not in allowed domains', { dialogId, assistantId, origin: choice.origin });
  }
  return { ok: true, kind, dialogId, since, who: { assistant_id: assistantId, origin: choice.origin } };
}
