import { execa } from 'execa';
import WebSocket from 'ws';
import { REPO_DIR } from '../infra/operate/stack.js';

// Test support for the live operator tests: listeners that reconnect like a real client (and
// remember which server answered), a publisher, and a way to run the operator scripts as the
// operator would (a separate process, real argv).

/** A dialog listener that reconnects after any close and records what it received. */
export interface Listener {
  readonly name: string;
  /** `server` of the latest `connected` frame ("ws-gateway" or "backend"), undefined while disconnected. */
  server(): string | undefined;
  readonly texts: Set<string>;
  readonly closes: number[];
  close(): void;
}

/** Opens a reconnecting listener on `url`, offering `protocols()` (the token subprotocol) on each connect. */
export function listener(name: string, url: () => string, headers: Record<string, string> = {}, protocols: () => string[] = () => []): Listener {
  let current: WebSocket | undefined;
  let server: string | undefined;
  let stopped = false;
  const texts = new Set<string>();
  const closes: number[] = [];
  const connect = () => {
    if (stopped) return;
    const ws = new WebSocket(url(), protocols(), { headers });
    current = ws;
    ws.on('message', (data) => {
      let frame: { type?: string; server?: string; data?: { text?: string } };
      try {
        frame = JSON.parse(String(data)) as typeof frame;
      } catch {
        return;
      }
      if (frame.type === 'connected') server = frame.server;
      const text = frame.data?.text;
      if (typeof text === 'string') texts.add(text);
    });
    ws.on('error', () => undefined);
    ws.on('close', (code) => {
      closes.push(code);
      server = undefined;
      // Reconnect soon, with jitter, as the close-code contract asks for 4200 and going-away codes.
      if (!stopped) setTimeout(connect, 50 + Math.random() * 150);
    });
  };
  connect();
  return {
    name,
    server: () => server,
    texts,
    closes,
    close() {
      stopped = true;
      current?.terminate();
    },
  };
}

/** Result of an operator script run. */
export interface ScriptRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `scripts/<script>` with argv in a child process (as `npm run` would, through tsx). */
export async function runOperatorScript(script: string, args: readonly string[], timeoutMs = 120_000): Promise<ScriptRun> {
  const r = await execa(process.execPath, ['--import', 'tsx', `scripts/${script}`, ...args], { cwd: REPO_DIR, timeout: timeoutMs, maxBuffer: 8 * 1024 * 1024, env: { FORCE_COLOR: '0' }, reject: false, stdin: 'ignore' });
  return { code: r.exitCode ?? 1, stdout: r.stdout, stderr: r.stderr };
}
