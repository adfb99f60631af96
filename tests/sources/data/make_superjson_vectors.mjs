// Regenerates superjson_2.2.7.json. Not run by the test suite:
//   cd /tmp && npm install superjson@2.2.7 && node /path/to/make_superjson_vectors.mjs
// superjson_2.2.1.json (the version the Trigger.dev SDK pins: no "v", legacy path escaping)
// came from superjson@2.2.1 and the cases dotted (with a key "k.1"), map_nonstring (keys 1
// and "s"), nested_map_in_set, refs_map and deep ({a: {b: {c: Date, d: [undefined]}}}).
import superjson, { SuperJSON } from "superjson";

const shared = { x: 1 };
const cases = {
  date: { requestedAt: new Date("2026-08-20T09:14:03.401Z"), n: 1 },
  root_date: new Date("2026-08-20T09:14:03.401Z"),
  bigint: { small: 12n, big53: 2n ** 53n + 1n, big64: 2n ** 64n + 7n, neg: -(2n ** 70n) },
  map_nonstring: { m: new Map([[1, "one"], [true, "yes"], [null, "nil"], ["s", new Date(0)]]) },
  map_date_key: new Map([[new Date(86400000), 5]]),
  map_object_key: new Map([[{ a: 1 }, "obj"], [[1, 2], "arr"]]),
  set: { s: new Set([3, 1, 2, "x", new Date(1000)]) },
  undef: { a: undefined, b: [1, undefined, 3], c: 2 },
  root_undefined: undefined,
  regexp: { r: /ab+c/gi, r2: /a\/b/ },
  numbers: { nan: NaN, inf: Infinity, ninf: -Infinity, nz: -0, arr: [NaN, 1] },
  dotted: { "a.b": { "c.d": new Date(0) }, "x\\y": { z: 1n }, "p\\.q": new Date(2000), "": new Date(3000) },
  nested_map_in_set: new Set([new Map([["k", new Set([new Date(5000)])]])]),
  refs: { a: shared, b: shared, c: [shared, { d: shared }] },
  refs_map: (() => { const o = { v: 1 }; return { m: new Map([["k", o]]), o }; })(),
  cycle: (() => { const o = { name: "root" }; o.self = o; return o; })(),
  cycle_child: (() => { const c = { n: 1 }; c.me = c; return { c }; })(),
  error: { e: new Error("boom") },
  url: { u: new URL("https://example.com/a?b=1") },
  big_date: { d: new Date("+010000-01-01T00:00:00.000Z"), old: new Date("0099-05-06T07:08:09.010Z") },
  array_of_maps: [new Map([[1, 2]]), new Map([["a", undefined]])],
  typed: { t: new Uint8Array([1, 2, 3]), f: new Float64Array([NaN, -0, 1.5]) },
  plain: { a: [1, "two", null, true], b: { c: 1.5 } },
};
const out = { _generator: "superjson (node " + process.version + ")" };
for (const [k, v] of Object.entries(cases)) out[k] = superjson.stringify(v);
out.dedupe_refs = new SuperJSON({ dedupe: true }).stringify(cases.refs);
console.log(JSON.stringify(out, null, 1));
