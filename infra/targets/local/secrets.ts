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
  // Added with the Redis users: older state directories lack them (filled in below).
  redisGatewayPassword: z.string().min(32).optional(),
  redisPublisherPassword: z.string().min(32).optional(),
  redisAdminPassword: z.string().min(32).optional(),
  gatewayDatabasePassword: z.string().min(32).optional(),
});

/** Secrets added after the first secrets files were written; a start fills in what a file lacks. */
const LATER_SECRETS = ['siteTokenSecret', 'widgetTokenSecret', 'redisGatewayPassword', 'redisPublisherPassword', 'redisAdminPassword', 'gatewayDatabasePassword'] as const;

const secret = () => randomBytes(32).toString('base64url');

/** A fresh set of random local secrets. */
export function generateSecrets(): LocalSecrets {
  return {
    jwtSecret: secret(),
    publishKey: secret(),
    debugToken: secret(),
    siteTokenSecret: secret(),
    widgetTokenSecret: secret(),
    redisGatewayPassword: secret(),
    redisPublisherPassword: secret(),
    redisAdminPassword: secret(),
    gatewayDatabasePassword: secret(),
  };
}

/** Path of the secrets file inside a state directory. */
export function secretsFile(stateDir: string): string {
  return path.join(stateDir, 'secrets.json');
}

async function readSecretsFile(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    return undefined;
  }
}

/** A secrets file as stored: state dirs made before the site/widget keys existed lack them. */
type StoredSecrets = z.output<typeof secretsSchema>;

function parseSecrets(file: string, text: string): StoredSecrets {
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
  return parsed.data;
}

/** Reads the secrets of a stack that was started; throws RPX_STACK_NOT_STARTED when there are none. */
export async function readLocalSecrets(stateDir: string): Promise<LocalSecrets> {
  const file = secretsFile(stateDir);
  const text = await readSecretsFile(file);
  if (text === undefined) {
    throw new ReplyxError('RPX_STACK_NOT_STARTED', `no local stack state in ${stateDir} (secrets.json missing)`, 'start the stack with npm start (or pass --state-dir of a running stack)');
  }
  const stored = parseSecrets(file, text);
  const complete = completeSecrets(stored);
  if (!complete) {
    throw new ReplyxError('RPX_STACK_NOT_STARTED', `${file} predates the site and widget token keys or the Redis users`, 'run npm stop, then npm start (it adds the keys and restarts every service with them)');
  }
  return complete;
}

function completeSecrets(stored: StoredSecrets): LocalSecrets | undefined {
  return LATER_SECRETS.every((key) => stored[key] !== undefined) ? (stored as LocalSecrets) : undefined;
}

/** Reads `<stateDir>/secrets.json`, creating it (mode 600) on first use. */
export async function loadOrCreateSecrets(stateDir: string): Promise<LocalSecrets> {
  const file = secretsFile(stateDir);
  const text = await readSecretsFile(file);
  if (text !== undefined) {
    const secrets = parseSecrets(file, text);
    // Someone may have loosened the mode; secrets stay owner-only.
    await chmod(file, 0o600);
    const complete = completeSecrets(secrets);
    if (complete) return complete;
    const completed = { ...secrets, ...Object.fromEntries(LATER_SECRETS.map((key) => [key, secrets[key] ?? secret()])) } as LocalSecrets;
    await writeFile(file, `${JSON.stringify(completed, null, 2)}\n`, { mode: 0o600 });
    return completed;
  }
  await mkdir(stateDir, { recursive: true });
  const secrets = generateSecrets();
  await writeFile(file, `${JSON.stringify(secrets, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
  return secrets;
}
