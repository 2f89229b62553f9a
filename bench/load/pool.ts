import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

// Forks the load processes and turns their IPC into request/response calls. Each process
// answers commands in order, so a FIFO of pending calls per process pairs replies with calls.
// serveCommands is the other end, run inside each load process.

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** A forked load process that answers one reply per command, in order. */
export class LoadProcess<Command, Reply extends { op: string }> {
  readonly #child: ChildProcess;
  readonly #pending: { resolve: (r: Reply) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }[] = [];
  readonly #exited: Promise<void>;
  readonly #unsolicited: Reply[] = [];

  /** Forks `entry` (a .ts file under bench/load) with tsx. */
  constructor(
    readonly name: string,
    entry: string,
  ) {
    this.#child = fork(fileURLToPath(new URL(entry, import.meta.url)), [], {
      execArgv: ['--import', 'tsx'],
      cwd: REPO_ROOT,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    this.#child.on('message', (message: Reply) => {
      const waiter = this.#pending.shift();
      if (!waiter) {
        this.#unsolicited.push(message);
        return;
      }
      clearTimeout(waiter.timer);
      if (message.op === 'error') waiter.reject(new Error(`${this.name}: ${(message as unknown as { message: string }).message}`));
      else waiter.resolve(message);
    });
    // Send failures surface through call(); this keeps a dead channel from crashing the harness.
    this.#child.on('error', () => undefined);
    this.#exited = new Promise((resolve) =>
      this.#child.once('exit', (code, signal) => {
        for (const waiter of this.#pending.splice(0)) {
          clearTimeout(waiter.timer);
          waiter.reject(new Error(`${this.name} exited (${signal ?? code})`));
        }
        resolve();
      }),
    );
  }

  /** The process id (the report lists generator CPU use). */
  get pid(): number {
    return this.#child.pid ?? -1;
  }

  /** Waits for a message the process sends on its own (the publisher's `ready`). */
  async expect(op: string, timeoutMs: number): Promise<Reply> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const i = this.#unsolicited.findIndex((m) => m.op === op);
      if (i >= 0) return this.#unsolicited.splice(i, 1)[0]!;
      if (this.#child.exitCode !== null) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`${this.name}: no "${op}" within ${timeoutMs} ms`);
  }

  /** Sends a command and resolves with its reply; rejects after `timeoutMs`. */
  call(command: Command, timeoutMs: number): Promise<Reply> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        // A late reply would pair with the next call: a timed-out process is unusable.
        this.#child.kill('SIGKILL');
        reject(new Error(`${this.name}: no reply within ${timeoutMs} ms`));
      }, timeoutMs);
      if (!this.#child.connected) {
        clearTimeout(timer);
        reject(new Error(`${this.name} is not running`));
        return;
      }
      this.#pending.push({ resolve, reject, timer });
      this.#child.send(command as object, (err) => {
        if (!err) return;
        const i = this.#pending.findIndex((w) => w.timer === timer);
        if (i >= 0) this.#pending.splice(i, 1);
        clearTimeout(timer);
        reject(new Error(`${this.name}: ${err.message}`));
      });
    });
  }

  /** Asks the process to exit, kills it after `graceMs`, and waits. */
  async stop(graceMs = 2000): Promise<void> {
    if (this.#child.exitCode === null && this.#child.signalCode === null) {
      if (this.#child.connected) this.#child.send({ op: 'exit' });
      const timer = setTimeout(() => this.#child.kill('SIGKILL'), graceMs);
      await this.#exited;
      clearTimeout(timer);
    }
  }
}

/**
 * Inside a load process: answers every command from the parent with one reply from `handle`
 * (a throw becomes `{ op: 'error' }`), exits on `exit`, and exits when the parent goes away so
 * no sockets are left orphaned.
 */
export function serveCommands<Command extends { readonly op: string }, Reply extends { readonly op: string }>(handle: (command: Exclude<Command, { readonly op: 'exit' }>) => Reply | Promise<Reply>): void {
  const reply = (message: Reply | { op: 'error'; message: string }) => process.send?.(message);
  process.on('message', (command: Command) => {
    if (command.op === 'exit') process.exit(0);
    void (async () => {
      try {
        reply(await handle(command as Exclude<Command, { readonly op: 'exit' }>));
      } catch (err) {
        reply({ op: 'error', message: (err as Error).message });
      }
    })();
  });
  process.on('disconnect', () => process.exit(0));
}
