import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { ReplyxError } from '../../errors.js';
import type { LocalSecrets } from './plan.js';

// Local secrets are generated once per state directory and kept there (mode 600), so tokens
// printed by `npm run stack -- tokens` stay valid across restarts and nothing is committed.

const secretsSchema = z.strictObject({
  jwtSecret: z.string().min(32),
  publishKey: z.string().min(32),
  debugToken: z.string().min(32),
  // Added with the site/widget token keys: older state directories lack them (filled in below).
  siteTokenSecret: z.string().min(32).optional(),
  widgetTokenSecret: z.string().min(32).optional(),
});

const secret = () => randomBytes(32).toString('base64url');

/** A fresh set of random local secrets. */
export function generateSecrets(): LocalSecrets {
  return { jwtSecret: secret(), publishKey: secret(), debugToken: secret(), siteTokenSecret: secret(), widgetTokenSecret: secret() };
}

/** Path of the secrets file inside a state directory. */
export function secretsFile(stateDir: string): string {
  return path.join(stateDir, 'secrets.json');
}

/** Reads `<stateDir>/secrets.json`, creating it (mode 600) on first use. */
export async function loadOrCreateSecrets(stateDir: string): Promise<LocalSecrets> {
  const file = secretsFile(stateDir);
  let text: string | undefined;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  if (text !== undefined) {
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch {
      raw = undefined;
    }
    const parsed = secretsSchema.safeParse(raw);
    if (!parsed.success) {
      throw new ReplyxError('RPX_LOCAL_SECRETS_INVALID', `${file} is not a valid secrets file`, `delete ${file} to generate new secrets (tokens printed before become invalid)`);
    }
    // Someone may have loosened the mode; secrets stay owner-only.
    await chmod(file, 0o600);
    const { siteTokenSecret, widgetTokenSecret } = parsed.data;
    if (siteTokenSecret && widgetTokenSecret) return { ...parsed.data, siteTokenSecret, widgetTokenSecret };
    const completed = { ...parsed.data, siteTokenSecret: siteTokenSecret ?? secret(), widgetTokenSecret: widgetTokenSecret ?? secret() };
    await writeFile(file, `${JSON.stringify(completed, null, 2)}\n`, { mode: 0o600 });
    return completed;
  }
  await mkdir(stateDir, { recursive: true });
  const secrets = generateSecrets();
  await writeFile(file, `${JSON.stringify(secrets, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
  return secrets;
}
