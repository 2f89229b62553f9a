import pg from 'pg';
import { loadMigrations, migrate } from '../backend/src/migrate.js';
import { seedDemoData } from '../backend/src/seed.js';

// The FastAPI example's database step, before uvicorn starts: the reference backend's migrations
// and demo seed, run by the reference backend's own code, so both backends serve one schema and
// the same demo data (dialogs 100, 123, 200, 300 and the health probe's dialog 900; the three site
// token ids; the visitor keys of dialogs 123 and 900).

const url = process.env.DATABASE_URL;
const widgetTokenSecret = process.env.WIDGET_TOKEN_SECRET;
if (!url || !widgetTokenSecret) {
  console.error('error RPX_BACKEND_CONFIG: DATABASE_URL and WIDGET_TOKEN_SECRET are required — set them as for the reference backend');
  process.exit(1);
}
const client = new pg.Client({ connectionString: url });
await client.connect();
try {
  const applied = await migrate(client, await loadMigrations());
  if (process.env.SEED_DEMO !== '0') await seedDemoData(client, { widgetTokenSecret });
  console.log(JSON.stringify({ level: 'info', service: 'backend', msg: `schema ready (${applied.length} migration(s) applied)` }));
} finally {
  await client.end();
}
