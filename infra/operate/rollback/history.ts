import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ReplyxError } from '../../errors.js';
import type { RollbackState } from './plan.js';

// The rollback history: one entry per applied rollback with the exact stack file text before
// and after, so `--undo` restores the previous state byte for byte. Undo pops entries (it does
// not push), so two undos walk back two rollbacks instead of toggling.

/** One applied rollback. */
export interface HistoryEntry {
  readonly at: string;
  readonly stack: string;
  readonly target: string;
  readonly before: RollbackState & { readonly text: string };
  readonly after: RollbackState & { readonly text: string };
}

/** Path of the history file in a state directory. */
export function historyFile(stateDir: string): string {
  return path.join(stateDir, 'rollback-history.json');
}

/** Reads the history (oldest first); a missing file is an empty history. */
export async function readHistory(file: string): Promise<HistoryEntry[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    return [];
  }
  try {
    const parsed = JSON.parse(text) as unknown;
    if (!Array.isArray(parsed)) throw new Error('not a list');
    return parsed as HistoryEntry[];
  } catch (err) {
    throw new ReplyxError('RPX_ROLLBACK_HISTORY', `${file} is not a rollback history: ${(err as Error).message}`, `move ${file} away; undo then has nothing to restore`);
  }
}

/** Writes a file atomically: temp file in the same directory, then rename. */
export async function writeAtomic(file: string, text: string): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, text);
  await rename(tmp, file);
}

/** Appends an entry. */
export async function pushHistory(file: string, entry: HistoryEntry): Promise<void> {
  const all = await readHistory(file);
  all.push(entry);
  await writeAtomic(file, `${JSON.stringify(all, null, 2)}\n`);
}

/** The latest entry of a stack, or a clear error when there is nothing to undo. */
export function lastEntry(all: readonly HistoryEntry[], stack: string, file: string): HistoryEntry {
  const entry = [...all].reverse().find((e) => e.stack === stack);
  if (!entry) throw new ReplyxError('RPX_ROLLBACK_NOTHING_TO_UNDO', `no rollback of stack "${stack}" recorded in ${file}`, 'nothing to undo; npm run check shows the current state');
  return entry;
}

/** Removes the latest entry of a stack (after a successful undo). */
export async function popHistory(file: string, stack: string): Promise<void> {
  const all = await readHistory(file);
  for (let i = all.length - 1; i >= 0; i -= 1) {
    if (all[i]!.stack === stack) {
      all.splice(i, 1);
      break;
    }
  }
  await writeAtomic(file, `${JSON.stringify(all, null, 2)}\n`);
}
