// Tracks events with Segment's own Node library (@segment/analytics-node),
// as an application would, against a Sluice collector:
//   node segment_client.js HOST WRITE_KEY COUNT
// Cycles through track, identify, page, screen, group and alias calls
// (one user per call, so each call is recognisable), flushing 25 at a
// time with a 100 ms pause after each 25, and prints what it was asked to
// send as JSON lines, then a summary line (failures it gave up on, HTTP
// requests made: more than one per 25 calls means it sent some again). The library retries what the
// collector does not answer 200, as it does against Segment.
const { Analytics } = require(process.env.SEGMENT_MODULE);

const [host, writeKey, count] = process.argv.slice(2);
const analytics = new Analytics({ writeKey, host, flushAt: 25, flushInterval: 200, maxRetries: 20 });
let errors = 0, requests = 0;
analytics.on("error", () => { errors += 1; });
analytics.on("http_request", () => { requests += 1; });

async function main() {
  const kinds = ["track", "identify", "page", "screen", "group", "alias"];
  for (let i = 0; i < Number(count); i++) {
    const kind = kinds[i % kinds.length];
    const userId = `user-${i}`;
    const timestamp = new Date(Date.UTC(2026, 11, 3, 10, 0, 0) + i * 1000);
    const call = { userId, timestamp };
    if (kind === "track") Object.assign(call, { event: "Order Completed", properties: { n: i, revenue: i / 4 } });
    if (kind === "identify") Object.assign(call, { traits: { n: i, plan: "pro" } });
    if (kind === "page" || kind === "screen") Object.assign(call, { name: `Screen ${i}`, properties: { n: i } });
    if (kind === "group") Object.assign(call, { groupId: `group-${i}`, traits: { n: i } });
    if (kind === "alias") Object.assign(call, { previousId: `anon-${i}` });
    analytics[kind](call);
    console.log(JSON.stringify({ type: kind, userId }));
    if (i % 25 === 24) await new Promise((r) => setTimeout(r, 100));
  }
  await analytics.closeAndFlush({ timeout: 120000 });
  console.log(JSON.stringify({ done: Number(count), errors, requests }));
}
main();
