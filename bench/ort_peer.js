#!/usr/bin/env node
// ONNX Runtime peer of Kiln's inference runtime for the inference bench (bench/run_infer_bench.py:
// the reference CNN exported by bench/infer_peer.py export-onnx, opset 13) and the ONNX latency
// bench (bench/onnx_latency.py: PyTorch-exported models at opset 17). Runs them with the npm
// package onnxruntime-node (installed in bench/ by `npm install --ignore-scripts`; the package
// ships its native binding and libonnxruntime, the install script only fetches optional CUDA
// libraries). Session options: intraOpNumThreads 1, interOpNumThreads 1, sequential execution,
// all graph optimisations.
//
// usage: node ort_peer.js latency MODEL.onnx [--warmup 200] [--runs 2000] [--shape 1,C,H,W]
//          batch-1 latency of the input `kiln bench` uses (x[i] = (i % 251) / 251), two ways
//          (the input's shape is the model's first input with its batch dim set to 1; --shape
//          gives it when other dims are symbolic too):
//          "api": `await session.run(feeds)`, the public API (each call goes through a Promise and
//                 a setImmediate turn of the event loop, as every user of the package pays);
//          "binding": the package's native InferenceSession (what the API wraps) called
//                 synchronously, i.e. ORT's own run plus the N-API crossing.
//          Every run is timed on its own (process.hrtime.bigint); prints one JSON line.
//        node ort_peer.js logits MODEL.onnx IN.f32 OUT.f32
//          logits of a batch of raw little-endian float32 images (N x 784) to raw float32.
//        node ort_peer.js run MODEL.onnx IN.bin OUT.f32 --shape NxAx... [--int32] [--opt all|basic|disabled]
//          the first output of any one-input model for a raw little-endian input of that shape,
//          float32 or (--int32) int32 token ids, to raw float32; --opt: the graph optimisation level
//          (default all: QDQ models then run with ONNX Runtime's integer kernels).
'use strict';
const fs = require('fs');
const path = require('path');

let ort;
try {
  ort = require('onnxruntime-node');
} catch (e) {
  console.log(JSON.stringify({error: `onnxruntime-node cannot be loaded: ${e.message}`}));
  process.exit(3);
}

const SESSION_OPTIONS = {
  intraOpNumThreads: 1,
  interOpNumThreads: 1,
  executionMode: 'sequential',
  graphOptimizationLevel: 'all',
};

function arg(name, dflt) {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}

function benchInput(n) {
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = Math.fround((i % 251) / 251);
  return x;
}

// The shape of the latency input: --shape, or the model's first input with its first (batch) dim
// set to 1; any other dim must be a number.
function inputShape(session) {
  const i = process.argv.indexOf('--shape');
  if (i >= 0) return process.argv[i + 1].split(',').map(Number);
  const meta = session.inputMetadata && session.inputMetadata[0];
  if (!meta || !meta.shape) return [1, 1, 28, 28];   // older packages without metadata: the CNN's
  return meta.shape.map((d, k) => {
    if (k === 0) return 1;
    if (typeof d !== 'number' || d < 1) throw new Error(`input ${meta.name}: dim ${k} is ${d}; give --shape`);
    return d;
  });
}

function stats(ns) {
  const a = Float64Array.from(ns).sort();
  return {
    latency_p50_us: +(a[a.length >> 1] / 1e3).toFixed(2),
    latency_p99_us: +(a[Math.floor((a.length - 1) * 0.99)] / 1e3).toFixed(2),
    latency_mean_us: +(a.reduce((s, v) => s + v, 0) / a.length / 1e3).toFixed(2),
    latency_min_us: +(a[0] / 1e3).toFixed(2),
  };
}

// The package's native session, created the way its backend.js does.
function nativeSession(model) {
  const {binding, initOrt} = require(path.join(path.dirname(require.resolve('onnxruntime-node')), 'binding.js'));
  initOrt();
  const s = new binding.InferenceSession();
  s.loadModel(model, SESSION_OPTIONS);
  return s;
}

async function latency(model) {
  const warmup = arg('--warmup', 200), runs = arg('--runs', 2000);
  const session = await ort.InferenceSession.create(model, SESSION_OPTIONS);
  const input = session.inputNames[0], output = session.outputNames[0];
  const shape = inputShape(session);
  const x = new ort.Tensor('float32', benchInput(shape.reduce((a, d) => a * d, 1)), shape);
  const out = {command: 'latency', onnxruntime: ort.env.versions, node: process.version, warmup, runs, shape,
               session_options: SESSION_OPTIONS, variants: {}};

  for (let i = 0; i < warmup; i++) await session.run({[input]: x});
  let lat = new Array(runs);
  let t0 = process.hrtime.bigint();
  for (let i = 0; i < runs; i++) {
    const t = process.hrtime.bigint();
    await session.run({[input]: x});
    lat[i] = Number(process.hrtime.bigint() - t);
  }
  let total = Number(process.hrtime.bigint() - t0);
  out.variants.api = {...stats(lat), throughput_per_s: +(runs / (total / 1e9)).toFixed(1)};

  const s = nativeSession(model);
  const feeds = {[input]: x}, fetches = {[output]: null};
  for (let i = 0; i < warmup; i++) s.run(feeds, fetches, {});
  lat = new Array(runs);
  t0 = process.hrtime.bigint();
  for (let i = 0; i < runs; i++) {
    const t = process.hrtime.bigint();
    s.run(feeds, fetches, {});
    lat[i] = Number(process.hrtime.bigint() - t);
  }
  total = Number(process.hrtime.bigint() - t0);
  out.variants.binding = {...stats(lat), throughput_per_s: +(runs / (total / 1e9)).toFixed(1)};
  out.peak_rss_bytes = process.resourceUsage().maxRSS * 1024;
  console.log(JSON.stringify(out));
}

async function logits(model, inPath, outPath) {
  const session = await ort.InferenceSession.create(model, SESSION_OPTIONS);
  const buf = fs.readFileSync(inPath);
  const x = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
  const n = x.length / 784;
  if (!Number.isInteger(n)) throw new Error(`${inPath}: ${x.length} floats is not a multiple of 784`);
  const r = await session.run({[session.inputNames[0]]: new ort.Tensor('float32', x, [n, 1, 28, 28])});
  const y = r[session.outputNames[0]];
  fs.writeFileSync(outPath, Buffer.from(y.data.buffer, y.data.byteOffset, y.data.byteLength));
  console.log(JSON.stringify({command: 'logits', examples: n, dims: y.dims, out: outPath, onnxruntime: ort.env.versions}));
}

function option(name, dflt) {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : dflt;
}

async function run(model, inPath, outPath) {
  const shape = option('--shape', '').split('x').map(Number), int32 = process.argv.includes('--int32');
  const opt = option('--opt', 'all');
  const session = await ort.InferenceSession.create(model, {...SESSION_OPTIONS, graphOptimizationLevel: opt});
  const buf = fs.readFileSync(inPath);
  const data = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
  const x = int32 ? new Int32Array(data) : new Float32Array(data);
  if (shape.some((d) => !(d > 0)) || shape.reduce((p, d) => p * d, 1) !== x.length)
    throw new Error(`${inPath}: ${x.length} values do not fill --shape ${option('--shape', '')}`);
  const r = await session.run({[session.inputNames[0]]: new ort.Tensor(int32 ? 'int32' : 'float32', x, shape)});
  const y = r[session.outputNames[0]];
  fs.writeFileSync(outPath, Buffer.from(y.data.buffer, y.data.byteOffset, y.data.byteLength));
  console.log(JSON.stringify({command: 'run', dims: y.dims, optimization: opt, out: outPath, onnxruntime: ort.env.versions}));
}

const [cmd, model, a, b] = process.argv.slice(2);
(cmd === 'latency' ? latency(model) : cmd === 'logits' ? logits(model, a, b) : cmd === 'run' ? run(model, a, b) :
  Promise.reject(new Error('usage: ort_peer.js latency MODEL.onnx [--warmup N] [--runs N] [--shape D,D,...] | logits MODEL.onnx IN.f32 OUT.f32 | ' +
                           'run MODEL.onnx IN.bin OUT.f32 --shape NxAx... [--int32] [--opt all|basic|disabled]')))
  .catch((e) => { console.error(e.stack || String(e)); process.exit(1); });
