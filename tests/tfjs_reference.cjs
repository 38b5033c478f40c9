// The yardstick for drfhq_tools/models/tfjs_graph.py: a TF.js graph model run by TensorFlow.js' own CPU backend.
//   node tfjs_reference.cjs MODEL_JSON INPUT_F32 N,H,W,C OUTPUT_NAME...   (weight shards beside MODEL_JSON, or
//   SHARD=FILE arguments before the outputs) -> JSON {output name: {shape, values}} on stdout.
// Needs @tensorflow/tfjs-core, -backend-cpu and -converter on NODE_PATH (`make setup` puts them in .venv/node).
const tf = require("@tensorflow/tfjs-core");
require("@tensorflow/tfjs-backend-cpu");
const { loadGraphModel } = require("@tensorflow/tfjs-converter");
const fs = require("fs");
const path = require("path");

(async () => {
  const [modelJson, inputFile, shapeText, ...rest] = process.argv.slice(2);
  const shards = Object.fromEntries(rest.filter((a) => a.includes("=")).map((a) => a.split("=", 2)));
  const outputs = rest.filter((a) => !a.includes("="));
  const model = JSON.parse(fs.readFileSync(modelJson));
  const buffers = model.weightsManifest.flatMap((g) => g.paths).map((p) => fs.readFileSync(shards[p] || path.join(path.dirname(modelJson), p)));
  const data = Buffer.concat(buffers);
  await tf.setBackend("cpu");
  const graph = await loadGraphModel(tf.io.fromMemory({
    modelTopology: model.modelTopology, weightSpecs: model.weightsManifest.flatMap((g) => g.weights),
    weightData: data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength)}));
  const raw = fs.readFileSync(inputFile);
  const input = tf.tensor(new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4), shapeText.split(",").map(Number));
  const result = {};
  for (const name of outputs) {
    const out = graph.execute(input, name);
    result[name] = { shape: out.shape, values: Array.from(out.dataSync()) };
  }
  process.stdout.write(JSON.stringify(result));
})().catch((err) => { console.error(String(err && err.stack || err)); process.exit(1); });
