import type { ClientState } from '../../../client/src/index.js';
import { fromHistory, isMessageRow, type MessageRow, type ShownMessage } from './message-list.js';

// DOM plumbing shared by the operator page and the widget: fetch a dialog's history through the
// API, render the message list and the connection state. Every element the end-to-end test reads
// has an id or a data attribute.

/** The element with `id`, typed; a missing element is a page bug worth a loud error. */
export function byId<T extends HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`demo page: no #${id}`);
  return el as T;
}

/** GET /api/dialogs/{id}/messages with `authorization`; the API's answer as the shown list. */
export async function fetchHistory(apiUrl: string, dialogId: number, authorization: string): Promise<ShownMessage[]> {
  const res = await fetch(`${apiUrl}/api/dialogs/${dialogId}/messages?limit=500`, { headers: { authorization } });
  if (!res.ok) throw new Error(`history of dialog ${dialogId}: HTTP ${res.status}`);
  const body = (await res.json()) as { messages?: unknown[] };
  return fromHistory((body.messages ?? []).filter(isMessageRow) as MessageRow[]);
}

/** POSTs `{ text }` to `path` with `authorization`; resolves once the API stored it. */
export async function postMessage(apiUrl: string, path: string, authorization: string, text: string): Promise<void> {
  const res = await fetch(`${apiUrl}${path}`, { method: 'POST', headers: { authorization, 'content-type': 'application/json' }, body: JSON.stringify({ text }) });
  if (!res.ok) throw new Error(`send: HTTP ${res.status}`);
}

/** Renders the list into `<ol id="messages">`: one `<li>` per message with its id, event id and delivery count. */
export function renderMessages(list: readonly ShownMessage[]): void {
  const ol = byId<HTMLOListElement>('messages');
  ol.replaceChildren(
    ...list.map((m) => {
      const li = document.createElement('li');
      li.dataset.messageId = String(m.id);
      li.dataset.eventId = m.eventId ?? '';
      li.dataset.deliveries = String(m.deliveries);
      const who = document.createElement('b');
      who.textContent = `${m.sender}: `;
      li.append(who, m.text);
      return li;
    }),
  );
  ol.scrollTop = ol.scrollHeight;
}

/** One line for a client state, as shown in `#state`. */
export function describeState(s: ClientState): string {
  switch (s.state) {
    case 'idle':
      return 'idle';
    case 'connecting':
      return 'connecting…';
    case 'open':
      return `connected to ${s.connected.instance}`;
    case 'reconnecting':
      return `reconnecting in ${(s.delayMs / 1000).toFixed(1)} s (${s.code} ${s.reason})`;
    case 'closed':
      return s.terminal ? `stopped: ${s.code} ${s.reason}` : 'closed';
  }
}

/** Shows a client state in `#state` (text; `data-state` and, while open, `data-server` for tests and CSS). */
export function showState(s: ClientState): void {
  const el = byId('state');
  el.dataset.state = s.state;
  el.dataset.server = s.state === 'open' ? s.connected.server : '';
  el.textContent = describeState(s);
}
