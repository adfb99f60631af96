// The official @electric-sql/client following one Trigger.dev run feed into better-sqlite3,
// the way an application would use it: every response's messages are applied in one
// transaction (upsert by key, delete by key) and the process exits at the first up-to-date.
// Prints one JSON line: {"event":"done","rows":N,"responses":M,"ms":T}.
// Usage: node materialize.mjs <api-url> <token> <db-path> <tag>
import { ShapeStream, isChangeMessage, isControlMessage } from "@electric-sql/client";
import Database from "better-sqlite3";

const [apiUrl, token, dbPath, tag] = process.argv.slice(2);
const started = performance.now();
const db = new Database(dbPath);
db.pragma("journal_mode = WAL");
db.pragma("synchronous = NORMAL");

// Columns come from the first change; the table keeps the wire names (quoted) as they are.
let columns = null;
const upserts = new Map(); // column set -> prepared upsert
let remove = null;
const quote = (name) => `"${name.replaceAll('"', '""')}"`;

function ensureTable(value) {
  if (columns) return;
  columns = Object.keys(value);
  const defs = columns.map((c) => `${quote(c)}`).join(", ");
  db.exec(`CREATE TABLE IF NOT EXISTS runs (key TEXT PRIMARY KEY, ${defs})`);
  remove = db.prepare("DELETE FROM runs WHERE key = ?");
}

function upsertFor(names) {
  const id = names.join("\u0000");
  let statement = upserts.get(id);
  if (!statement) {
    const cols = names.map(quote);
    const sets = cols.map((c) => `${c} = excluded.${c}`).join(", ");
    statement = db.prepare(
      `INSERT INTO runs (key, ${cols.join(", ")}) VALUES (?${", ?".repeat(cols.length)}) ` +
        `ON CONFLICT (key) DO UPDATE SET ${sets}`,
    );
    upserts.set(id, statement);
  }
  return statement;
}

// better-sqlite3 binds strings, numbers, bigints, buffers and null; the client's parsed
// booleans, arrays and objects become 0/1 and JSON text.
function bindable(value) {
  if (value === null || value === undefined) return null;
  switch (typeof value) {
    case "boolean":
      return value ? 1 : 0;
    case "object":
      return JSON.stringify(value);
    default:
      return value;
  }
}

const apply = db.transaction((changes) => {
  for (const message of changes) {
    const op = message.headers.operation;
    if (op === "delete") {
      if (remove) remove.run(message.key);
      continue;
    }
    ensureTable(message.value);
    const names = Object.keys(message.value);
    upsertFor(names).run(message.key, ...names.map((n) => bindable(message.value[n])));
  }
});

let responses = 0;
const controller = new AbortController();
const stream = new ShapeStream({
  url: `${apiUrl}/realtime/v1/runs`,
  params: { tags: tag },
  headers: { Authorization: `Bearer ${token}`, "x-trigger-electric-version": "1.0.0-beta.1" },
  signal: controller.signal,
});

stream.subscribe(
  (messages) => {
    responses += 1;
    const changes = messages.filter(isChangeMessage);
    if (changes.length) apply(changes);
    const done = messages.some((m) => isControlMessage(m) && m.headers.control === "up-to-date");
    if (done) {
      controller.abort();
      const rows = db.prepare("SELECT count(*) AS n FROM runs").get().n;
      db.close();
      const ms = performance.now() - started;
      process.stdout.write(JSON.stringify({ event: "done", rows, responses, ms }) + "\n");
      process.exit(0);
    }
  },
  (error) => {
    process.stdout.write(JSON.stringify({ event: "error", message: String(error?.message ?? error) }) + "\n");
    process.exit(1);
  },
);
