import { isMap, parse, parseDocument } from 'yaml';
import { ReplyxError } from '../errors.js';
import { CONFIG_NAMESPACE, SECRET_KEYS, topologyFromStackText } from './load.js';

// Editing a stack file's settings without an editor (`npm run stack -- set KEY VALUE`, rollback):
// the yaml Document API keeps comments, key order and every other key as they are, and the
// result is validated as a whole before anyone writes it.

/** One setting to write: a dotted topology key (`gateway.heartbeatMs`, `wsRoute`) and its value. */
export interface StackSetting {
  readonly key: string;
  readonly value: unknown;
}

const KEY = /^[A-Za-z][A-Za-z0-9]*(?:\.[A-Za-z][A-Za-z0-9]*)*$/;

/** A command-line value as the stack file would hold it: `20000` a number, `true` a boolean, anything else a string (pure). */
export function settingValue(raw: string): unknown {
  let value: unknown;
  try {
    value = parse(raw);
  } catch {
    return raw;
  }
  return typeof value === 'number' || typeof value === 'boolean' ? value : raw;
}

/**
 * Writes `settings` into a stack file's text under `config:` (`gateway.heartbeatMs` goes to
 * `replyx:gateway` → `heartbeatMs`), keeping comments; throws RPX_STACK_FILE_YAML or the
 * topology's validation error when the result would not be a valid stack file (pure).
 */
export function editStackSettings(text: string, settings: readonly StackSetting[], source = 'stack file'): string {
  const doc = parseDocument(text);
  if (doc.errors.length > 0) throw new ReplyxError('RPX_STACK_FILE_YAML', `${source}: ${doc.errors[0]!.message.split('\n')[0]}`, 'fix the YAML syntax at the line named');
  for (const { key, value } of settings) {
    if (!KEY.test(key)) throw new ReplyxError('RPX_USAGE', `"${key}" is not a setting name (like gateway.heartbeatMs or wsRoute)`, 'name a key of the configuration reference in README.md');
    const [head, ...rest] = key.split('.');
    if ((SECRET_KEYS as readonly string[]).includes(head!)) throw new ReplyxError('RPX_USAGE', `${head} is a secret`, `set it with pulumi config set --secret ${CONFIG_NAMESPACE}:${head}`);
    const top = `${CONFIG_NAMESPACE}:${head}`;
    if (rest.length > 0) {
      const section = doc.getIn(['config', top], true);
      if (section !== undefined && !isMap(section)) throw new ReplyxError('RPX_STACK_FILE_YAML', `${source}: ${top} is not a mapping`, `make ${top} a mapping (${rest.join('.')}: ...)`);
    }
    doc.setIn(['config', top, ...rest], value);
  }
  const out = doc.toString();
  // Unknown keys and out-of-range values fail here, each named with its path.
  topologyFromStackText(out, source);
  return out;
}
