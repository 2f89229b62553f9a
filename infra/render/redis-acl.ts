import { createHash } from 'node:crypto';
import { ReplyxError } from '../errors.js';
import { KEY_PREFIX } from '../../gateway/src/broker/protocol.js';
import { PUBLISHER_ACL_COMMANDS } from '../../gateway/src/broker/publisher.js';

// Redis users of the stack, rendered once for every target that runs its own Redis. The default
// user is off, so a client without credentials gets NOAUTH for everything. Each service gets the
// commands it runs and nothing else, on the stack's keys and channels only:
//  - the gateway reads histories (XRANGE/XREVRANGE), subscribes, loads the function library and
//    publishes (POST /internal/publish) through it;
//  - publishers (the backend) call the library and read histories (the reference backend's
//    WebSocket mode resumes `since=` from them; the backend owns that data anyway). Redis 7
//    checks the caller's ACL for every command a function runs, so the library's own commands
//    (XADD, PUBLISH, ...) must be allowed too: a publisher can write events by hand, but not
//    subscribe, run EVAL, or load, replace or delete the library;
//  - an admin user for operators (redis-cli --user replyx-admin).

/** The stack's Redis users by role. */
export const REDIS_USERS = { gateway: 'replyx-gateway', publisher: 'replyx-publisher', admin: 'replyx-admin' } as const;
/** A role of {@link REDIS_USERS}. */
export type RedisRole = keyof typeof REDIS_USERS;

/**
 * What every client needs to connect as ioredis does: AUTH/HELLO, the ready check (INFO),
 * CLIENT SETNAME for its connection name, PING for health, QUIT to leave.
 */
export const REDIS_CONNECT_COMMANDS = ['auth', 'hello', 'ping', 'info', 'client|setname', 'quit'] as const;

/** Reading a dialog's history as gateway/src/broker/history.ts does (one MULTI of XRANGE/XREVRANGE). */
export const REDIS_HISTORY_COMMANDS = ['xrange', 'xrevrange', 'multi', 'exec', 'discard'] as const;

/** The commands each application role may run (besides {@link REDIS_CONNECT_COMMANDS}). */
export const REDIS_ROLE_COMMANDS: Readonly<Record<Exclude<RedisRole, 'admin'>, readonly string[]>> = {
  publisher: [...PUBLISHER_ACL_COMMANDS, ...REDIS_HISTORY_COMMANDS],
  gateway: [...PUBLISHER_ACL_COMMANDS, ...REDIS_HISTORY_COMMANDS, 'function|load', 'subscribe', 'unsubscribe'],
};

/** Key and channel patterns the application roles reach: the stack's dialog keys and channels only. */
export const REDIS_KEY_PATTERN = `${KEY_PREFIX}:dialog:*`;

/** The password of each role (generated secrets of the target). */
export type RedisPasswords = Readonly<Record<RedisRole, string>>;

/** The hash Redis stores for a password (`#<sha256>`), so no ACL file holds a password. */
export function redisPasswordHash(password: string): string {
  return `#${createHash('sha256').update(password, 'utf8').digest('hex')}`;
}

/** The ACL rules of one role, without the password (pure). */
export function redisAclRules(role: RedisRole): string[] {
  if (role === 'admin') return ['~*', '&*', '+@all'];
  const commands = [...REDIS_CONNECT_COMMANDS, ...REDIS_ROLE_COMMANDS[role]];
  return ['resetkeys', `~${REDIS_KEY_PATTERN}`, 'resetchannels', `&${REDIS_KEY_PATTERN}`, '-@all', ...commands.map((c) => `+${c}`)];
}

/** The complete ACL file (`aclfile`): the default user off, then one line per role. */
export function renderRedisAclFile(passwords: RedisPasswords): string {
  for (const [role, password] of Object.entries(passwords)) {
    // Passwords reach URLs and a line-based file: refuse anything that could break either.
    if (!/^[A-Za-z0-9_-]{32,}$/.test(password)) {
      throw new ReplyxError('RPX_REDIS_USER_PASSWORD', `the Redis password of ${REDIS_USERS[role as RedisRole]} must be 32+ characters of A-Z a-z 0-9 _ -`, 'set another with pulumi config set --secret, or unset it to have one generated');
    }
  }
  const lines = ['user default off resetkeys resetchannels -@all'];
  for (const role of Object.keys(REDIS_USERS) as RedisRole[]) {
    lines.push(['user', REDIS_USERS[role], 'on', redisPasswordHash(passwords[role]), ...redisAclRules(role)].join(' '));
  }
  return `${lines.join('\n')}\n`;
}

/** A Redis URL that authenticates as `role` (passwords are URL-safe by construction). */
export function redisUrlFor(role: RedisRole, password: string, host: string, port: number, scheme: 'redis' | 'rediss' = 'redis'): string {
  return `${scheme}://${REDIS_USERS[role]}:${encodeURIComponent(password)}@${host}:${port}`;
}
