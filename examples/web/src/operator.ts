import { DialogClient } from '../../../client/src/index.js';
import { applyEvent, isMessageRow, resumeAfter, type ShownMessage } from './message-list.js';
import { byId, fetchHistory, postMessage, renderMessages, showState } from './page.js';

// The operator page: an admin client on one dialog. The operator pastes the admin JWT (a real
// panel has it from its own login); it stays in this tab's sessionStorage with the dialog, so a
// reload reopens it, and never goes in a URL.
// History comes from the API, then the client resumes after its newest event, so nothing
// published in between is missed; a `resync` refetches.

const TOKEN_KEY = 'replyx.demo.admin-token';
const DIALOG_KEY = 'replyx.demo.dialog';
const api = location.origin;
let client: DialogClient | undefined;
let list: ShownMessage[] = [];

async function open(dialogId: number, token: string): Promise<void> {
  client?.close();
  const authorization = `Bearer ${token}`;
  const reload = async () => {
    list = await fetchHistory(api, dialogId, authorization);
    renderMessages(list);
  };
  byId('dialog-title').textContent = `Dialog ${dialogId}`;
  try {
    await reload();
  } catch (err) {
    byId('state').textContent = `cannot load dialog ${dialogId}: ${(err as Error).message}`;
    return;
  }
  // '0-0' when nothing was published yet: the gateway replays (or asks for a refetch), never skips.
  client = new DialogClient({ url: api, kind: 'admin', dialogId, getToken: () => token, since: resumeAfter(list) ?? '0-0' });
  client.on('event', (e) => {
    if (!isMessageRow(e.data)) return;
    list = applyEvent(list, e.data, e.id);
    renderMessages(list);
  });
  client.on('resync', reload);
  client.on('state', showState);
  client.connect();
  byId<HTMLFormElement>('send').onsubmit = (ev) => {
    ev.preventDefault();
    const input = byId<HTMLInputElement>('text');
    const text = input.value.trim();
    if (!text) return;
    input.value = '';
    postMessage(api, `/api/dialogs/${dialogId}/messages`, authorization, text).catch((err: Error) => (byId('state').textContent = err.message));
  };
}

const form = byId<HTMLFormElement>('login');
const dialogInput = byId<HTMLInputElement>('dialog');
const tokenInput = byId<HTMLTextAreaElement>('token');
dialogInput.value = new URLSearchParams(location.search).get('dialog') ?? sessionStorage.getItem(DIALOG_KEY) ?? '123';
tokenInput.value = sessionStorage.getItem(TOKEN_KEY) ?? '';
form.onsubmit = (ev) => {
  ev.preventDefault();
  const token = tokenInput.value.trim();
  sessionStorage.setItem(TOKEN_KEY, token);
  sessionStorage.setItem(DIALOG_KEY, dialogInput.value);
  void open(Number(dialogInput.value), token);
};
if (tokenInput.value) void open(Number(dialogInput.value), tokenInput.value);
