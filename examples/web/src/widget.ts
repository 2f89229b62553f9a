import { DEFAULT_TIMING, DialogClient, ReplyxClientError, WidgetSession, reconnectDelayMs, type WidgetSessionInfo } from '../../../client/src/index.js';
import { applyEvent, isMessageRow, resumeAfter, type ShownMessage } from './message-list.js';
import { byId, fetchHistory, postMessage, renderMessages, showState } from './page.js';

// The widget, inside the customer site's iframe and served from the chat domain. The embedding
// page passes its origin (`parent_origin`); the API checks it against the assistant's allowed
// domains when it issues the widget session. A refusal is final: "domain not allowed", no retry.

const params = new URLSearchParams(location.search);
const assistantId = Number(params.get('assistant_id') ?? '3');
const parentOrigin = params.get('parent_origin') ?? undefined;
const api = location.origin;
let list: ShownMessage[] = [];

/** Storage for the visitor key; a partitioned or blocked localStorage falls back to memory (new dialog per load). */
function visitorStorage(): Storage | undefined {
  try {
    localStorage.setItem('replyx.demo.probe', '1');
    return localStorage;
  } catch {
    return undefined;
  }
}

function stop(text: string, code: number | undefined): void {
  const banner = byId('banner');
  banner.textContent = code === 4003 ? 'domain not allowed' : text;
  banner.dataset.code = String(code ?? '');
  banner.hidden = false;
  byId('state').textContent = 'stopped';
  byId('send').hidden = true;
}

async function firstSession(session: WidgetSession): Promise<WidgetSessionInfo | undefined> {
  for (let attempt = 0; ; attempt += 1) {
    try {
      return await session.get();
    } catch (err) {
      const closeCode = err instanceof ReplyxClientError ? err.closeCode : undefined;
      if (closeCode !== undefined) {
        stop((err as Error).message, closeCode);
        return undefined;
      }
      const delayMs = reconnectDelayMs('backoff', attempt, DEFAULT_TIMING, Math.random);
      byId('state').textContent = `chat unavailable, retrying in ${(delayMs / 1000).toFixed(1)} s`;
      await new Promise((resolve) => setTimeout(resolve, delayMs));
    }
  }
}

async function main(): Promise<void> {
  byId('state').textContent = 'starting…';
  const storage = visitorStorage();
  const session = new WidgetSession({ apiUrl: api, assistantId, ...(parentOrigin ? { parentOrigin } : {}), ...(storage ? { storage } : {}) });
  const info = await firstSession(session);
  if (!info) return;
  const dialogId = info.dialogId;
  byId('dialog').textContent = String(dialogId);
  const reload = async () => {
    list = await fetchHistory(api, dialogId, await session.authorization());
    renderMessages(list);
  };
  await reload();
  const client = new DialogClient({ url: api, kind: 'widget', dialogId, getToken: session.getToken, since: resumeAfter(list) ?? '0-0' });
  client.on('event', (e) => {
    if (!isMessageRow(e.data)) return;
    list = applyEvent(list, e.data, e.id);
    renderMessages(list);
  });
  client.on('resync', reload);
  client.on('state', (s) => {
    showState(s);
    if (s.state === 'closed' && s.terminal) stop(`chat stopped: ${s.code} ${s.reason}`, s.code);
  });
  client.connect();
  byId<HTMLFormElement>('send').onsubmit = (ev) => {
    ev.preventDefault();
    const input = byId<HTMLInputElement>('text');
    const text = input.value.trim();
    if (!text) return;
    input.value = '';
    session
      .authorization()
      .then((authorization) => postMessage(api, `/api/widget/dialogs/${dialogId}/messages`, authorization, text))
      .catch((err: Error) => (byId('state').textContent = err.message));
  };
}

main().catch((err: Error) => (byId('state').textContent = `widget failed: ${err.message}`));
