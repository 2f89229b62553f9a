import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { alertRules } from '../../../monitoring/queries.js';
import { planAlarms } from './alarms.js';

// Each CloudWatch alarm stands for one Prometheus alert: same runbook, and the runbook names the alarm.

const REPO = path.resolve(import.meta.dirname, '../../..');

describe('planAlarms', () => {
  const rules = new Map(alertRules().map((r) => [r.alert, r]));

  it('stands each alarm for an alert of monitoring/alerts.yml, with that alert runbook', () => {
    for (const alarm of planAlarms()) {
      const rule = rules.get(alarm.alert);
      expect(rule, alarm.alert).toBeDefined();
      expect(alarm.runbook).toBe(rule!.annotations.runbook_url);
      expect(alarm.description).toContain(alarm.alert);
      expect(alarm.description).toContain(alarm.runbook);
    }
    expect(new Set(planAlarms().map((a) => a.suffix)).size).toBe(planAlarms().length);
  });

  it('is named by the runbook it points to (`<name>-<stack>-<suffix>`)', () => {
    for (const alarm of planAlarms()) {
      const runbook = readFileSync(path.join(REPO, alarm.runbook), 'utf8');
      expect(runbook, `${alarm.runbook} names ${alarm.suffix}`).toContain(`\`<name>-<stack>-${alarm.suffix}\``);
    }
  });

  it('treats a task that reports nothing as down, and a quiet load balancer as fine', () => {
    for (const alarm of planAlarms()) expect(alarm.treatMissingData, alarm.suffix).toBe(alarm.suffix.endsWith('-no-tasks') ? 'breaching' : 'notBreaching');
  });
});
