import { recordingClient, type RecordingClient } from '../../test/reliability/traffic.js';
import { byDialog, scoreStormClient, type PublishedEvent, type ResumedOutage } from '../storm-score.js';
import { serveCommands } from './pool.js';

// Storm client process (forked by bench/storm.ts): holds its share of the reconnect storm's
// clients — the reliability suite's recording clients, i.e. the project's own @replyx/client
// following the close-code contract (4200: reconnect after jitter, resume with since=) — each
// bound to one of several loopback source addresses, and scores them against the published
// events when asked. One process stays well under the 20,000 descriptors a process may hold.

/** Orchestrator -> storm client process. */
export type StormClientCommand =
  | {
      readonly op: 'open';
      /** nginx's base URL, `http://127.0.0.1:PORT`. */
      readonly url: string;
      readonly token: string;
      /** One client per entry: the dialog it follows. */
      readonly dialogs: readonly number[];
      /** Source addresses, assigned round-robin. */
      readonly localAddresses: readonly string[];
      readonly prefix: string;
      /** Clients started before waiting for them to be open (the opening pace). */
      readonly batch: number;
      readonly timeoutMs: number;
    }
  | { readonly op: 'count' }
  | { readonly op: 'score'; readonly published: readonly PublishedEvent[] }
  | { readonly op: 'close' }
  | { readonly op: 'exit' };

/** Storm client process -> orchestrator. */
export type StormClientReply =
  | { readonly op: 'opened'; readonly open: number; readonly total: number }
  | { readonly op: 'count'; readonly open: number; readonly total: number }
  | {
      readonly op: 'scored';
      readonly clients: number;
      readonly notOpen: number;
      readonly lost: number;
      readonly duplicates: number;
      readonly wireRepeats: number;
      readonly resyncs: number;
      readonly outages: readonly ResumedOutage[];
    }
  | { readonly op: 'closed' }
  | { readonly op: 'error'; readonly message: string };

const clients: RecordingClient[] = [];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const openCount = () => clients.filter((c) => c.isOpen()).length;

async function open(cmd: Extract<StormClientCommand, { op: 'open' }>): Promise<StormClientReply> {
  const deadline = Date.now() + cmd.timeoutMs;
  for (let i = 0; i < cmd.dialogs.length; i += 1) {
    const dialogId = cmd.dialogs[i]!;
    const localAddress = cmd.localAddresses[i % cmd.localAddresses.length]!;
    clients.push(recordingClient({ name: `storm-${i}`, url: cmd.url, kind: 'admin', dialogId, getToken: () => cmd.token, readToken: () => cmd.token, prefix: cmd.prefix, localAddress }));
    // Paced: a batch in flight at a time, so opening is not itself a storm.
    if ((i + 1) % cmd.batch === 0 || i === cmd.dialogs.length - 1) {
      while (openCount() < clients.length && Date.now() < deadline) await sleep(20);
    }
  }
  return { op: 'opened', open: openCount(), total: clients.length };
}

function score(published: readonly PublishedEvent[]): StormClientReply {
  const dialogs = byDialog(published);
  let lost = 0;
  let duplicates = 0;
  let wireRepeats = 0;
  const outages: ResumedOutage[] = [];
  for (const c of clients) {
    const s = scoreStormClient(c, dialogs);
    lost += s.lost;
    duplicates += s.duplicates;
    wireRepeats += s.wireRepeats;
    outages.push(...s.outages);
  }
  return { op: 'scored', clients: clients.length, notOpen: clients.length - openCount(), lost, duplicates, wireRepeats, resyncs: clients.reduce((n, c) => n + c.resyncs, 0), outages };
}

serveCommands<StormClientCommand, StormClientReply>(async (command) => {
  switch (command.op) {
    case 'open':
      return open(command);
    case 'count':
      return { op: 'count', open: openCount(), total: clients.length };
    case 'score':
      return score(command.published);
    case 'close':
      for (const c of clients.splice(0)) c.close();
      await sleep(200);
      return { op: 'closed' };
  }
});
