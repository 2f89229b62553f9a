import type pg from 'pg';
import { domainEntryProblem } from '@replyx/gateway/origin/allowed-domains';
import { DEMO_ASSISTANTS, DEMO_DIALOGS, DEMO_SITES, DEMO_USER, DEMO_VISITOR_DIALOG_ID, DEMO_WIDGET_ASSISTANT_ID, demoVisitorKey, PROBE_DIALOG_ID } from './demo.js';
import { visitorKeyHash } from './store.js';
import { MIGRATION_LOCK_KEY } from './migrate.js';

/**
 * Inserts the demo user, assistants and dialogs if missing (idempotent: existing rows are
 * left as they are), then moves the id sequences past them so later inserts cannot collide.
 * Registers the demo site token ids and sets the visitor key hashes of dialog 123 and of the
 * health probe's dialog (derived from
 * `widgetTokenSecret`, so it follows the stack's secret).
 */
export async function seedDemoData(client: pg.ClientBase, secrets: { readonly widgetTokenSecret: string }): Promise<void> {
  for (const a of DEMO_ASSISTANTS) {
    const bad = a.allowedDomains.filter((d) => domainEntryProblem(d) !== undefined);
    if (bad.length > 0) throw new Error(`demo assistant ${a.id} lists unusable allowed domains: ${bad.join(', ')}`);
  }
  await client.query('BEGIN');
  try {
    await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_KEY]);
    await client.query('INSERT INTO users (id, email, name) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING', [DEMO_USER.id, DEMO_USER.email, DEMO_USER.name]);
    for (const a of DEMO_ASSISTANTS) {
      await client.query('INSERT INTO assistants (id, user_id, name, allowed_domains) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING', [a.id, DEMO_USER.id, a.name, [...a.allowedDomains]]);
    }
    for (const d of DEMO_DIALOGS) {
      await client.query('INSERT INTO dialogs (id, assistant_id) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING', [d.id, d.assistantId]);
    }
    await client.query('INSERT INTO dialogs (id, assistant_id, probe) VALUES ($1, $2, true) ON CONFLICT (id) DO UPDATE SET probe = true', [PROBE_DIALOG_ID, DEMO_WIDGET_ASSISTANT_ID]);
    for (const id of [DEMO_VISITOR_DIALOG_ID, PROBE_DIALOG_ID]) await client.query('UPDATE dialogs SET visitor_key_hash = $2 WHERE id = $1', [id, visitorKeyHash(demoVisitorKey(secrets.widgetTokenSecret, id))]);
    for (const s of DEMO_SITES) {
      // Minted on demand with fresh lifetimes, so the registration itself never expires.
      await client.query("INSERT INTO site_tokens (jti, user_id, assistant_id, expires_at) VALUES ($1, $2, $3, 'infinity') ON CONFLICT (jti) DO NOTHING", [s.jti, DEMO_USER.id, s.assistantId]);
    }
    for (const table of ['users', 'assistants', 'dialogs']) {
      // Table names come from the fixed list above, never from input.
      await client.query(`SELECT setval(pg_get_serial_sequence('${table}', 'id'), GREATEST((SELECT COALESCE(MAX(id), 1) FROM ${table}), 1))`);
    }
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}
