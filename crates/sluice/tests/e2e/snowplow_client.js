// Tracks events with Snowplow's own Node tracker (@snowplow/node-tracker),
// as an application would, against a Sluice collector:
//   node snowplow_client.js HOST PORT COUNT
// Two trackers: one POSTs batches of 10 (base64 self-describing parts),
// one sends every 10th event as a GET pixel (JSON parts). Cycles through
// page views, structured events and link clicks with a product entity;
// every 20th event from the 4th is a link click that breaks its schema and
// every 20th from the 8th names a schema nobody registered. Prints each
// event as a JSON line (eid, kind, whether it is valid), then a summary.
// A failed request leaves its events in the tracker's store, sent again at
// the next flush, as the tracker does against Snowplow; at the end it
// flushes until both stores are empty.
const path = require("path");
const sp = require(path.join(process.env.SNOWPLOW_MODULES, "@snowplow/node-tracker"));
const core = require(path.join(process.env.SNOWPLOW_MODULES, "@snowplow/tracker-core"));

const [host, port, count] = process.argv.slice(2);
const LINK_CLICK = "iglu:com.snowplowanalytics.snowplow/link_click/jsonschema/1-0-1";
const PRODUCT = "iglu:com.acme/productView/jsonschema/1-0-0";
let requests = 0, failures = 0;

function tracker(method, encodeBase64) {
  const store = core.newInMemoryEventStore({});
  const t = sp.newTracker({ namespace: method, appId: "shop", encodeBase64 }, {
    endpoint: host, port: Number(port), protocol: "http", eventMethod: method,
    bufferSize: method === "post" ? 10 : 1, eventStore: store, connectionTimeout: 2000,
    onRequestSuccess: () => { requests += 1; },
    onRequestFailure: () => { requests += 1; failures += 1; },
  });
  t.setDomainUserId("d-1");
  t.setSessionIndex(1);
  return { t, store };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  const post = tracker("post", true), get = tracker("get", false);
  for (let i = 0; i < Number(count); i++) {
    const { t } = i % 10 === 9 ? get : post;
    let kind, valid = true, payload;
    if (i % 4 === 0) {
      kind = "page_view";
      payload = t.track(sp.buildPageView({ pageUrl: `https://shop.example/p/${i}?ref=x#top`, pageTitle: `Page ${i}`, referrer: "https://search.example/q" }));
    } else if (i % 4 === 1) {
      kind = "struct";
      payload = t.track(sp.buildStructEvent({ category: "shop", action: "add", label: `item-${i}`, value: i / 2 }));
    } else {
      kind = "link_click";
      let schema = LINK_CLICK, targetUrl = `https://x.example/${i}`;
      if (i % 20 === 3) { targetUrl = ""; valid = false; }
      if (i % 20 === 7) { schema = "iglu:com.acme/unknown/jsonschema/1-0-0"; valid = false; }
      payload = t.track(
        sp.buildSelfDescribingEvent({ event: { schema, data: { targetUrl, elementId: `e${i}` } } }),
        [{ schema: PRODUCT, data: { sku: `sku-${i}`, unitPrice: i } }],
      );
    }
    console.log(JSON.stringify({ eid: payload.eid, kind, valid }));
    if (i % 20 === 19) await sleep(100);
  }
  const deadline = Date.now() + 120000;
  for (const { t, store } of [post, get]) {
    while ((await store.count()) > 0 && Date.now() < deadline) {
      await t.flush();
      if ((await store.count()) > 0) await sleep(300);
    }
  }
  const left = (await post.store.count()) + (await get.store.count());
  console.log(JSON.stringify({ done: Number(count), left, requests, failures }));
}
main();
