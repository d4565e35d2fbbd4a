// The page's JavaScript on the shared cases (tests/parity/cases.py), under Node.
// argv[2]: the static folder; stdin: a JSON list of jobs; stdout: a JSON list of answers.
// Each job calls the functions the page itself calls (unitmath.js for inspect.js's worked
// values, preprocess.js and rules.js for the in-browser engine), nothing else.
"use strict";
const path = require("path");
const dir = process.argv[2];
const unitMath = require(path.join(dir, "unitmath.js"));
const pp = require(path.join(dir, "preprocess.js"));
const rules = require(path.join(dir, "rules.js"));

// inspect.js's context over the values a test sends: {layer name: flat float list}
function explain(job) {
  const byName = Object.fromEntries(job.layers.map((l) => [l.name, l]));
  const values = Object.fromEntries(Object.entries(job.values).map(([k, v]) => [k, Float64Array.from(v)]));
  const per = (l) => (l.shape.length === 3 ? l.shape[1] * l.shape[2] : l.shape[0]);
  const ctx = { layer: (n) => byName[n], value: (n, c, i) => values[n][c * per(byName[n]) + i], normalization: job.normalization };
  return job.units.map((u) => {
    const r = unitMath.explain(byName[u.layer], u.m, u.y, u.x, ctx, u.weights);
    return r.unexplained ? { unexplained: r.unexplained } : { z: r.z, a: r.a };
  });
}

const list = (a) => (a ? Array.from(a) : null);
const refused = (fn) => { try { fn(); return null; } catch (err) { return err.message; } };

// engine_ort.js's answer up to the forward pass: what is fed, the plain downsample beside it
// (digits models), and the warnings for the probabilities the network gave
function answer(job) {
  const prep = (preprocess) => (job.rgba
    ? pp.prepareRGBA(Uint8ClampedArray.from(job.rgba), job.w, job.h, job.config, { file: job.file, preprocess })
    : pp.prepare(Float64Array.from(job.gray, Math.fround), job.h, job.w, job.config, preprocess));
  const { x, shown } = prep(job.preprocess);
  const raw = job.facts.digits ? (job.preprocess ? prep(false).shown : shown) : null;
  const probs = job.probs, order = probs.map((_, i) => i).sort((a, b) => probs[b] - probs[a]);
  const warnings = rules.warnings({ randomWeights: job.facts.random_weights, preprocessing: job.facts.preprocessing,
    inputSize: job.facts.input_size }, shown, probs, order, raw);
  return { x: list(x), raw: list(raw), warnings };
}

// engine_ort.js's checks of a request body (rules.js), in its order
function request(job) {
  return refused(() => {
    const { kind } = rules.requestKind(job.body);
    if (kind === "image") rules.fromList(job.body.image, job.limits);
    else if (kind !== "sample") rules.checkURL(kind, job.body[kind]);
  });
}

const ops = {
  explain,
  answer,
  request,
  decoded: (job) => refused(() => rules.checkDecoded(job.w, job.h, job.limits, { file: job.file })),
  activations: (job) => job.cases.map((c) => ({ names: Object.keys(unitMath.ACTIVATIONS),
    values: job.zs.map((z) => unitMath.activate(c.name, z, { name: "case", ...c.params })) })),
  format: (job) => ({ percent: job.values.map(rules.percent), g: job.values.map(rules.formatG) }),
};
const jobs = JSON.parse(require("fs").readFileSync(0, "utf8"));
process.stdout.write(JSON.stringify(jobs.map((job) => ops[job.op](job))));
