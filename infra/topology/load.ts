import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parseDocument } from 'yaml';
import { ReplyxError } from '../errors.js';
import { topologyKeys, type TopologyInput } from './schema.js';
import { validateTopology, TopologyError, type ValidatedTopology } from './validate.js';

/** The Pulumi project name, and so the namespace of every config key (`replyx:wsRoute`). */
export const CONFIG_NAMESPACE = 'replyx';

/** Config keys that hold secrets: read by the targets, never part of the topology. */
export const SECRET_KEYS = ['jwtSecret', 'siteTokenSecret', 'widgetTokenSecret', 'postgresPassword', 'publishKey', 'redisPassword', 'redisGatewayPassword', 'redisPublisherPassword', 'redisAdminPassword', 'gatewayDatabasePassword', 'debugToken'] as const;
export type SecretKey = (typeof SECRET_KEYS)[number];

/**
 * Turns a flat Pulumi config map (`{"replyx:backend": {...}, "aws:region": "..."}`) into a raw
 * topology. Keys of other namespaces and secret keys are skipped; unknown `replyx:` keys are
 * kept so that validation names them.
 */
export function topologyInputFromConfig(config: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const input: Record<string, unknown> = {};
  const prefix = `${CONFIG_NAMESPACE}:`;
  for (const [key, value] of Object.entries(config)) {
    if (!key.startsWith(prefix)) continue;
    const name = key.slice(prefix.length);
    if ((SECRET_KEYS as readonly string[]).includes(name)) continue;
    input[name] = value;
  }
  return input;
}

/** What Pulumi accepts as a stack name here: it names `Pulumi.<stack>.yaml`, so no path and no shell characters. */
const STACK_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$/;

/** True when `text` is a stack name (`dev`, `aws`, `prod-eu`). */
export function isStackName(text: string): boolean {
  return STACK_NAME.test(text);
}

/** Path of the stack file for a stack name, relative to a project directory. */
export function stackFilePath(projectDir: string, stack: string): string {
  return path.join(projectDir, `Pulumi.${stack}.yaml`);
}

/** Parses the text of a `Pulumi.<stack>.yaml` into its raw `config:` map. */
export function parseStackFile(text: string, source: string): Record<string, unknown> {
  const doc = parseDocument(text);
  if (doc.errors.length > 0) {
    throw new ReplyxError('RPX_STACK_FILE_YAML', `${source}: ${doc.errors[0]!.message.split('\n')[0]}`, 'fix the YAML syntax at the line named');
  }
  const root: unknown = doc.toJS() ?? {};
  if (typeof root !== 'object' || root === null || Array.isArray(root)) {
    throw new ReplyxError('RPX_STACK_FILE_YAML', `${source}: the file is not a YAML mapping`, 'start the file with "config:" followed by replyx: keys');
  }
  const config = (root as Record<string, unknown>).config ?? {};
  if (typeof config !== 'object' || config === null || Array.isArray(config)) {
    throw new ReplyxError('RPX_STACK_FILE_YAML', `${source}: "config" is not a mapping`, 'make "config:" a mapping of replyx:<key> entries');
  }
  // Secure values are `{secure: "..."}` objects; they only matter for secret keys, skipped later.
  return config as Record<string, unknown>;
}

/** Validates the topology held in a stack file's text (pure: no I/O). */
export function topologyFromStackText(text: string, source: string): ValidatedTopology {
  return validateTopology(topologyInputFromConfig(parseStackFile(text, source)), source);
}

/**
 * Loads and validates `Pulumi.<stack>.yaml` straight from disk, for scripts that run without
 * the Pulumi CLI.
 */
export async function loadTopologyFromStackFile(file: string): Promise<ValidatedTopology> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ReplyxError('RPX_STACK_FILE_MISSING', `cannot read ${file}: ${(err as Error).message}`, 'pass --stack with an existing stack, or create the file (see Pulumi.dev.yaml)', { cause: err });
  }
  return topologyFromStackText(text, path.basename(file));
}

/**
 * Reads the topology from a Pulumi config object inside a program. `all` is
 * `pulumi.runtime.allConfig()`: values are strings, objects JSON-encoded.
 */
export function topologyFromPulumiConfig(all: Readonly<Record<string, string>>, source = 'pulumi config'): ValidatedTopology {
  const decoded: Record<string, unknown> = {};
  for (const [key, raw] of Object.entries(all)) {
    decoded[key] = decodeConfigValue(raw);
  }
  return validateTopology(topologyInputFromConfig(decoded), source);
}

function decodeConfigValue(raw: string): unknown {
  const trimmed = raw.trim();
  if (trimmed.startsWith('{') || trimmed.startsWith('[')) {
    try {
      return JSON.parse(trimmed) as unknown;
    } catch {
      return raw;
    }
  }
  // Pulumi stores scalars as strings; numbers and booleans in objects arrive typed already.
  if (/^-?\d+$/.test(trimmed)) return Number(trimmed);
  if (trimmed === 'true' || trimmed === 'false') return trimmed === 'true';
  return raw;
}

export { TopologyError, topologyKeys, type TopologyInput };
