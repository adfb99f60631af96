// The Trigger.dev SDK's runs.subscribeToRunsWithTag collecting one tag's runs into
// better-sqlite3, the way a user would write it: iterate the subscription, upsert each run
// object (its payload and output already downloaded and parsed by the SDK), and stop once
// <expected> distinct runs have been seen. The benchmark's runs do not change while it runs,
// so the first sight of each run is its state in the snapshot.
// Prints one JSON line: {"event":"done","rows":N,"ms":T}.
// Usage: node sdk-materialize.mjs <api-url> <secret-key> <db-path> <tag> <expected>
import { configure, runs } from "@trigger.dev/sdk";
import Database from "better-sqlite3";

const [baseURL, accessToken, dbPath, tag, expectedText] = process.argv.slice(2);
const expected = Number(expectedText);
const started = performance.now();
configure({ baseURL, accessToken });

const db = new Database(dbPath);
db.pragma("journal_mode = WAL");
db.pragma("synchronous = NORMAL");
db.exec(`CREATE TABLE IF NOT EXISTS runs (
  id TEXT PRIMARY KEY, task_identifier TEXT, status TEXT, tags TEXT, payload TEXT,
  output TEXT, metadata TEXT, error TEXT, is_test INTEGER, created_at TEXT, updated_at TEXT,
  started_at TEXT, finished_at TEXT, duration_ms REAL, cost_in_cents REAL,
  idempotency_key TEXT)`);
const upsert = db.prepare(`INSERT INTO runs VALUES (
  @id, @task_identifier, @status, @tags, @payload, @output, @metadata, @error, @is_test,
  @created_at, @updated_at, @started_at, @finished_at, @duration_ms, @cost_in_cents,
  @idempotency_key)
  ON CONFLICT (id) DO UPDATE SET task_identifier = excluded.task_identifier,
  status = excluded.status, tags = excluded.tags, payload = excluded.payload,
  output = excluded.output, metadata = excluded.metadata, error = excluded.error,
  is_test = excluded.is_test, created_at = excluded.created_at,
  updated_at = excluded.updated_at, started_at = excluded.started_at,
  finished_at = excluded.finished_at, duration_ms = excluded.duration_ms,
  cost_in_cents = excluded.cost_in_cents, idempotency_key = excluded.idempotency_key`);

const json = (value) => (value === undefined ? null : JSON.stringify(value));
const iso = (value) => (value ? new Date(value).toISOString() : null);

const seen = new Set();
const subscription = runs.subscribeToRunsWithTag(tag);
try {
  for await (const run of subscription) {
    upsert.run({
      id: run.id,
      task_identifier: run.taskIdentifier,
      status: run.status,
      tags: json(run.tags),
      payload: json(run.payload),
      output: json(run.output),
      metadata: json(run.metadata),
      error: json(run.error),
      is_test: run.isTest ? 1 : 0,
      created_at: iso(run.createdAt),
      updated_at: iso(run.updatedAt),
      started_at: iso(run.startedAt),
      finished_at: iso(run.finishedAt),
      duration_ms: run.durationMs ?? null,
      cost_in_cents: run.costInCents ?? null,
      idempotency_key: run.idempotencyKey ?? null,
    });
    seen.add(run.id);
    if (seen.size >= expected) break;
  }
} catch (error) {
  process.stdout.write(JSON.stringify({ event: "error", message: String(error?.message ?? error) }) + "\n");
  process.exit(1);
}
subscription.unsubscribe();
const rows = db.prepare("SELECT count(*) AS n FROM runs").get().n;
db.close();
const ms = performance.now() - started;
process.stdout.write(JSON.stringify({ event: "done", rows, ms }) + "\n");
process.exit(0);
