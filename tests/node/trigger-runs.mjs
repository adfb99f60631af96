// Subscribes with the official @trigger.dev/sdk and prints every run it yields as a JSON line
// ({"event":"run","run":{...}}). Usage (stops on stdin EOF):
//   node trigger-runs.mjs <base-url> <access-token> run <runId>
//   node trigger-runs.mjs <base-url> <access-token> tag <tag>[,<tag>...] [createdAt]
//   node trigger-runs.mjs <base-url> <access-token> batch <batchId>
import { configure, runs } from "@trigger.dev/sdk";

const [baseURL, accessToken, mode, target, createdAt] = process.argv.slice(2);
configure({ baseURL, accessToken });
const emit = (event) => process.stdout.write(JSON.stringify(event) + "\n");

let subscription;
if (mode === "run") subscription = runs.subscribeToRun(target, { stopOnCompletion: false });
else if (mode === "tag")
  subscription = runs.subscribeToRunsWithTag(target.split(","), createdAt ? { createdAt } : undefined);
else if (mode === "batch") subscription = runs.subscribeToBatch(target);
else throw new Error(`unknown mode ${mode}`);

process.stdin.resume();
process.stdin.on("end", () => {
  subscription.unsubscribe();
  process.exit(0);
});

try {
  for await (const run of subscription) {
    emit({
      event: "run",
      run: {
        id: run.id,
        taskIdentifier: run.taskIdentifier,
        status: run.status,
        tags: run.tags,
        payload: run.payload,
        output: run.output ?? null,
        metadata: run.metadata ?? null,
        error: run.error ?? null,
        isTest: run.isTest,
        createdAt: run.createdAt,
        updatedAt: run.updatedAt,
        finishedAt: run.finishedAt ?? null,
        durationMs: run.durationMs,
        costInCents: run.costInCents,
        isCompleted: run.isCompleted,
      },
    });
  }
  emit({ event: "end" });
} catch (error) {
  emit({ event: "error", message: String(error?.message ?? error) });
}
