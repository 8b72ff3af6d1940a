// Classify texts with transformers.js, loading a model repo by id from a Hub endpoint (the tests' loopback server).
// Usage: node classify.mjs <endpoint> <repo_id> <dtype: fp32|q8|fp16> <text>...   Prints [{label, score, scores}] as JSON.
import { env, pipeline } from "@huggingface/transformers";

const [endpoint, repoId, dtype, ...texts] = process.argv.slice(2);
env.remoteHost = endpoint.endsWith("/") ? endpoint : `${endpoint}/`;
env.allowLocalModels = false;
env.useBrowserCache = false;
env.cacheDir = process.env.TRANSFORMERS_JS_CACHE || env.cacheDir;

const classify = await pipeline("text-classification", repoId, { dtype, device: "cpu" });
const results = [];
for (const text of texts) {  // one text per call: each is scored alone, as a user's single sentence is
  const all = await classify(text, { top_k: null });
  const scores = Object.fromEntries(all.map(({ label, score }) => [label, score]));
  results.push({ label: all[0].label, score: all[0].score, scores });
}
console.log(JSON.stringify(results));
