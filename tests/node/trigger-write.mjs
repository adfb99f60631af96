// Uses the official @trigger.dev/sdk write API against the emulator and prints the handles:
// tasks.trigger (with a large payload that the SDK offloads itself), batch.trigger,
// metadata via runs.* is in-task only, so it is exercised over HTTP by the Python tests.
// Usage: node trigger-write.mjs <base-url> <secret-key>
import { configure, tasks, batch, auth } from "@trigger.dev/sdk";

const [baseURL, accessToken] = process.argv.slice(2);
configure({ baseURL, accessToken });
const small = await tasks.trigger("send-email", { to: "a@example.com" }, { tags: ["user:1234", "sdk"] });
const big = await tasks.trigger("import-csv", { rows: "x".repeat(200 * 1024) }, { tags: ["sdk"] });
const b = await batch.trigger([
  { id: "send-email", payload: { to: "b@example.com" } },
  { id: "send-email", payload: { to: "c@example.com" }, options: { tags: ["sdk"] } },
]);
const token = await auth.createPublicToken({ scopes: { read: { tags: ["sdk"] } } });
process.stdout.write(JSON.stringify({ small, big, batch: b, token }) + "\n");
