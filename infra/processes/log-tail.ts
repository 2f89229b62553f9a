import { readFile } from 'node:fs/promises';

// The end of a log file: what a failed start quotes in its error, what the check reads from
// nginx's access log. One routine for every caller.

/** The last `lines` non-empty lines of a text file; rejects when it cannot be read. */
export async function lastLines(file: string, lines: number): Promise<string[]> {
  const text = await readFile(file, 'utf8');
  return text.split('\n').filter((l) => l.length > 0).slice(-lines);
}

/** The last lines of a log joined on one line for an error message, or `(no log yet)`. */
export async function logExcerpt(file: string, lines = 8, separator = ' | '): Promise<string> {
  try {
    const tail = await lastLines(file, lines);
    return tail.length > 0 ? tail.join(separator) : '(log is empty)';
  } catch {
    return '(no log yet)';
  }
}
