import { describe, expect, it } from 'vitest';
import { PUBLISHER_ACL_COMMANDS } from '../../gateway/src/broker/publisher.js';
import { redisAclRules, redisPasswordHash, redisUrlFor, renderRedisAclFile, REDIS_USERS } from './redis-acl.js';

const passwords = { gateway: 'g'.repeat(40), publisher: 'p'.repeat(40), admin: 'a'.repeat(40) };

describe('Redis ACL rendering', () => {
  it('turns the default user off and gives each role a hashed password, never the password itself', () => {
    const text = renderRedisAclFile(passwords);
    const lines = text.trimEnd().split('\n');
    expect(lines[0]).toBe('user default off resetkeys resetchannels -@all');
    expect(lines.slice(1).map((l) => l.split(' ')[1])).toEqual([REDIS_USERS.gateway, REDIS_USERS.publisher, REDIS_USERS.admin]);
    for (const [role, password] of Object.entries(passwords)) {
      expect(text).not.toContain(password);
      expect(text).toContain(`${REDIS_USERS[role as keyof typeof REDIS_USERS]} on ${redisPasswordHash(password)} `);
    }
    expect(redisPasswordHash('x')).toMatch(/^#[0-9a-f]{64}$/);
  });

  it('limits the application roles to dialog keys and channels, and publishers to the function, its commands and history reads', () => {
    for (const role of ['gateway', 'publisher'] as const) {
      const rules = redisAclRules(role);
      expect(rules.slice(0, 5)).toEqual(['resetkeys', '~replyx:dialog:*', 'resetchannels', '&replyx:dialog:*', '-@all']);
      for (const c of PUBLISHER_ACL_COMMANDS) expect(rules).toContain(`+${c}`);
      for (const never of ['+eval', '+evalsha', '+function|delete', '+function|flush', '+keys', '+flushall', '+config', '+acl', '+@all', '+client']) expect(rules, role).not.toContain(never);
    }
    expect(redisAclRules('publisher')).not.toContain('+subscribe');
    expect(redisAclRules('publisher')).not.toContain('+function|load');
    expect(redisAclRules('gateway')).toEqual(expect.arrayContaining(['+subscribe', '+xrange', '+xrevrange', '+function|load']));
    expect(redisAclRules('admin')).toEqual(['~*', '&*', '+@all']);
  });

  it('refuses passwords that are short or would break a URL or the file', () => {
    for (const bad of ['short', `${'a'.repeat(40)} on +@all`, `${'a'.repeat(40)}@host`, `${'a'.repeat(40)}\nuser x`]) {
      expect(() => renderRedisAclFile({ ...passwords, publisher: bad })).toThrow(/RPX_REDIS_USER_PASSWORD|32\+ characters/);
    }
  });

  it('builds URLs that name the role', () => {
    const url = new URL(redisUrlFor('gateway', passwords.gateway, '127.0.0.1', 6380));
    expect([url.protocol, url.username, url.password, url.port]).toEqual(['redis:', 'replyx-gateway', passwords.gateway, '6380']);
  });
});
