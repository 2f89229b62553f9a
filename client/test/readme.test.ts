import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { transform } from 'esbuild';
import ts from 'typescript';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import * as clientModule from '../src/index.js';
import { fakeJwt, startScriptedServer, type ScriptedServer } from './scripted-server.js';

// The README's "client in five lines" is real code: it type-checks against the package's sources
// with browser globals only (the app's own `auth`, `showMessage`, `reloadMessages` declared), and
// runs against a scripted gateway on port 0: the token goes in the subprotocol, an event reaches
// showMessage, a resync calls reloadMessages(123).

const REPO_DIR = path.resolve(import.meta.dirname, '../..');
const CLIENT_INDEX = path.join(REPO_DIR, 'client/src/index.ts');
const IMPORT_LINE = "import { DialogClient } from '@replyx/client';";

/** The README's ts block that imports the package, as lines. */
async function readmeSnippet(): Promise<string[]> {
  const readme = await readFile(path.join(REPO_DIR, 'README.md'), 'utf8');
  const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]!).filter((b) => b.includes(IMPORT_LINE));
  expect(blocks).toHaveLength(1);
  return blocks[0]!.trimEnd().split('\n');
}

/** What the snippet expects the app to have; the test supplies these at run time. */
const APP_DECLARATIONS = [
  'declare const auth: { accessToken(): string | Promise<string> };',
  'declare function showMessage(data: unknown): void;',
  'declare function reloadMessages(dialogId: number): Promise<void>;',
  'export {};',
].join('\n');

function typeErrors(source: string): string[] {
  const fileName = path.join(REPO_DIR, 'client/test/__readme_snippet__.ts');
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    lib: ['lib.es2022.d.ts', 'lib.dom.d.ts'],
    types: [],
    skipLibCheck: true,
    paths: { '@replyx/client': [CLIENT_INDEX] },
  };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (name, version, ...rest) => (name === fileName ? ts.createSourceFile(name, source, version) : getSourceFile(name, version, ...rest));
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (name) => name === fileName || fileExists(name);
  const program = ts.createProgram({ rootNames: [fileName], options, host });
  return ts.getPreEmitDiagnostics(program).map((d) => `${d.file?.fileName ?? ''}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`);
}

let server: ScriptedServer | undefined;
const globals = globalThis as { WebSocket?: unknown };
const originalWebSocket = globals.WebSocket;

afterEach(async () => {
  globals.WebSocket = originalWebSocket;
  await server?.close();
  server = undefined;
});

describe('README: the client in five lines', () => {
  it('is five lines that import the package and type-check against its sources with browser globals', async () => {
    const lines = await readmeSnippet();
    expect(lines).toHaveLength(5);
    expect(lines[0]).toBe(IMPORT_LINE);
    const source = `${lines.join('\n')}\n${APP_DECLARATIONS}\n`;
    expect(typeErrors(source)).toEqual([]);
    // The check bites: a kind the package does not know is a type error.
    expect(typeErrors(source.replace("kind: 'admin'", "kind: 'boss'")).join('\n')).toContain('"boss"');
  }, 60_000);

  it('runs: token in the subprotocol, events to showMessage, resync to reloadMessages(123)', async () => {
    server = await startScriptedServer();
    // Node 20 has no global WebSocket; a browser does. The snippet relies on the global.
    globals.WebSocket = WebSocket;
    const body = (await readmeSnippet()).slice(1).join('\n').replace("'wss://chat.example.com'", JSON.stringify(server.wsUrl));
    // Types stripped only; the body runs as a function of what the import and the app provide.
    const { code } = await transform(`function snippet() {\n${body}\nreturn client;\n}`, { loader: 'ts' });
    const token = fakeJwt({ type: 'access', sub: '1', exp: Math.floor(Date.now() / 1000) + 3600 });
    const shown: unknown[] = [];
    const reloaded: number[] = [];
    const app = { auth: { accessToken: () => token }, showMessage: (data: unknown) => shown.push(data), reloadMessages: async (id: number) => void reloaded.push(id) };
    const run = new Function('DialogClient', 'auth', 'showMessage', 'reloadMessages', `${code}\nreturn snippet();`) as (...args: unknown[]) => clientModule.DialogClient;
    const client = run(clientModule.DialogClient, app.auth, app.showMessage, app.reloadMessages);
    try {
      const conn = await server.next();
      expect(conn.url.pathname).toBe('/ws/dialogs/123');
      expect(conn.url.search).toBe('');
      expect(conn.token).toBe(token);
      await client.opened();
      conn.send({ id: '1732780000000-0', type: 'message:new', dialog_id: 123, data: { text: 'hi' }, ts: 1732780000000 });
      conn.send({ type: 'resync' });
      await expect.poll(() => ({ shown, reloaded })).toEqual({ shown: [{ text: 'hi' }], reloaded: [123] });
    } finally {
      client.close();
    }
  });
});
