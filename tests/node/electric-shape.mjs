// Follows one Electric shape with the official @electric-sql/client ShapeStream and prints,
// as JSON lines on stdout, the materialised rows after every batch that ends up to date
// ({"event":"rows",...}) and every must-refetch ({"event":"must-refetch"}).
// Usage: node electric-shape.mjs <base-url> <table> [where] [columns]   (stops on stdin EOF)
import { ShapeStream, isChangeMessage, isControlMessage } from "@electric-sql/client";

const [baseUrl, table, where, columns] = process.argv.slice(2);
const params = { table };
if (where) params.where = where;
if (columns) params.columns = columns.split(",");

const controller = new AbortController();
const emit = (event) => process.stdout.write(JSON.stringify(event) + "\n");
// Like most apps, retry from the current offset on errors the client does not retry itself
// (e.g. a connection dropped mid-body), recording them as "retry" events.
const onError = (error) => {
  emit({ event: "retry", message: String(error?.message ?? error), status: error?.status });
  return {};
};
const stream = new ShapeStream({ url: `${baseUrl}/v1/shape`, params, signal: controller.signal, onError });
const rows = new Map();

stream.subscribe(
  (messages) => {
    let upToDate = false;
    for (const message of messages) {
      if (isChangeMessage(message)) {
        const op = message.headers.operation;
        if (op === "insert") rows.set(message.key, { ...message.value });
        else if (op === "update") rows.set(message.key, { ...rows.get(message.key), ...message.value });
        else if (op === "delete") rows.delete(message.key);
      } else if (isControlMessage(message)) {
        if (message.headers.control === "must-refetch") {
          rows.clear();
          emit({ event: "must-refetch" });
        } else if (message.headers.control === "up-to-date") {
          upToDate = true;
        }
      }
    }
    if (upToDate) {
      emit({ event: "rows", handle: stream.shapeHandle, offset: stream.lastOffset, rows: [...rows.values()] });
    }
  },
  (error) => {
    emit({ event: "error", message: String(error?.message ?? error), status: error?.status });
  },
);

process.stdin.resume();
process.stdin.on("end", () => {
  controller.abort();
  process.exit(0);
});
