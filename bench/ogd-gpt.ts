// `npm run bench -- ogd-gpt`: a char-level GPT (2 layers, 4 heads, 128 wide, block 64) on Moby Dick
// for a fixed number of steps, trained plainly (`none`) and with Occam (`occam`, transformer bound),
// same seed, through the real local cluster, with the paper's nanoGPT recipe: AdamW (weight decay
// 0.1, betas 0.9/0.95), clipping at norm 1, dropout 0.2, fused QKV, warmup then cosine decay.
// Prints holdback and test loss per round, weights kept, compute, tokens/s and MFU, one summary
// table, and a sample from Occam's best model; writes them to docs/results/ogd-gpt.md and .json
// (ogd-gpt-seedS.* for another seed; claim (c) of docs/RESULTS.md).
// Options: --workers N (2), --rounds R (10), --round-steps S (60), --batch-size B (64),
// --learning-rate X (0.001), --eval-limit W (1024 windows per split), --seed S (1).
import { resolveConfig, type OccamConfig } from '../src/config.ts';
import { loadDataSource } from '../src/training/data/load.ts';
import type { TextDataSource } from '../src/training/data/text.ts';
import { describeChoice, selectBackend } from '../src/training/engine.ts';
import { flopsUtilization, gptFlopsPerToken, measureMatmulFlops } from '../src/training/flops.ts';
import { createModel } from '../src/training/models/create.ts';
import type { RoundMetrics } from '../src/storage/run-dir.ts';
import { generate, loadTrainedGpt } from '../src/training/sample.ts';
import { saveModelInputs } from '../src/training/trained.ts';
import { fmt, machine, runExperiment, writeResults, type ExperimentRun } from './_experiment.ts';
import { benchArgs } from './_steps.ts';

const args = benchArgs();
const common: Partial<OccamConfig> = {
  dataset: 'moby-dick',
  model: 'gpt',
  layers: 2,
  heads: 4,
  width: 128,
  blockSize: 64,
  batchSize: Number(args['batch-size'] ?? 64),
  roundSteps: Number(args['round-steps'] ?? 60),
  rounds: Number(args.rounds ?? 10),
  learningRate: Number(args['learning-rate'] ?? 0.001),
  evalLimit: Number(args['eval-limit'] ?? 1024),
  evalBatchSize: 128,
  // The recipe: nanoGPT's (shakespeare-char) AdamW, clipping and dropout; warmup over the first
  // 5 % of the steps, then a cosine to a tenth of the peak at the last step.
  weightDecay: 0.1,
  beta1: 0.9,
  beta2: 0.95,
  gradClip: 1,
  dropout: 0.2,
  p0: 0.4,
  holdback: 0.1,
  workers: Number(args.workers ?? 2),
  seed: Number(args.seed ?? 1),
};
const totalSteps = (common.rounds as number) * (common.roundSteps as number);
Object.assign(common, {
  warmupSteps: Math.round(0.05 * totalSteps),
  lrDecaySteps: totalSteps,
  minLearningRate: (common.learningRate as number) / 10,
});
const config = resolveConfig(common);

// The workers pick their backend the same way (config backend `auto`); say which one that is here.
const engine = await selectBackend('auto');
const startMachine = machine();
const started = Date.now();
const lines: string[] = [];
const say = (line = '') => {
  console.log(line);
  lines.push(line);
};
const data = loadDataSource(config) as TextDataSource;
// MFU is stated against this machine's float32 matrix-product rate, measured here on all cores.
const peakFlops = await measureMatmulFlops();
const flopsPerToken = gptFlopsPerToken(createModel(config, data).params, config);
const steps = config.rounds * config.roundSteps;
say(
  `# OGD on a char-level GPT: Moby Dick (${data.classes} characters), ${config.layers} layers, ${config.heads} heads, width ${config.width}, block ${config.blockSize}`,
);
say(
  `${steps} steps (${config.rounds} rounds × ${config.roundSteps}) of ${config.batchSize} windows, AdamW lr ${config.learningRate} (warmup ${config.warmupSteps} steps, cosine to ${config.minLearningRate} at step ${config.lrDecaySteps}), weight decay ${config.weightDecay}, betas ${config.beta1}/${config.beta2}, clip ${config.gradClip}, dropout ${config.dropout}, fused QKV, p0 ${config.p0} (transformer bound), seed ${config.seed}, ${config.workers} worker(s), ${describeChoice(engine)}`,
);
say(
  `${(flopsPerToken / 1e6).toFixed(2)} MFLOP per token trained; MFU against this machine's measured float32 matrix-product rate, ${(peakFlops / 1e9).toFixed(1)} GFLOP/s`,
);
say(
  `evaluation: the first ${config.evalLimit} windows of ${config.blockSize} characters of holdback (${data.holdbackCount} in all) and of test (${data.testCount}); losses are nats per character\n`,
);

const none = await runExperiment('none', { ...common, strategy: 'none' });
const occam = await runExperiment('occam', { ...common, strategy: 'occam' });

for (const run of [none, occam]) {
  say(`\n## ${run.label}: per round\n`);
  say(
    '| round | step | train loss | holdback loss | test loss | weights kept | p after | compute (weights × windows) | tokens/s | MFU | elapsed |',
  );
  say('| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const m of run.metrics) {
    const { tokensPerSecond, mfu } = throughput(m);
    say(
      `| ${m.round} | ${m.step} | ${fmt(m.trainLoss)} | ${fmt(m.holdbackLoss)} | ${fmt(m.testLoss)} | ${(100 * m.weightsKept).toFixed(1)} % | ${m.p.toFixed(3)} | ${m.compute.toExponential(3)} | ${tokensPerSecond.toFixed(0)} | ${(100 * (mfu ?? 0)).toFixed(1)} % | ${(m.elapsedMs / 1000).toFixed(1)} s |`,
    );
  }
}

say('\n## summary (the best round: lowest holdback loss)\n');
say(summaryTable([none, occam]));

// A sample from Occam's best model, as `occam sample` would print it.
const runDir = occam.summary.runDir;
saveModelInputs(runDir, data);
const prompt = 'Call me Ishmael.';
const sample = await generate(loadTrainedGpt(runDir), { length: 400, temperature: 0.8, topK: 0, seed: 1, prompt });
say(
  `\n## sample from Occam's best model\n\nnode bin/occam.mjs sample ${runDir} --length 400 --temperature 0.8 --seed 1 --prompt '${prompt}'\n`,
);
say(prompt + sample);

const result = {
  command: `npm run bench -- ogd-gpt ${process.argv.slice(2).join(' ')}`.trim(),
  config: common,
  backend: engine.backend,
  machine: { atStart: startMachine, atEnd: machine() },
  totalMinutes: Number(((Date.now() - started) / 60000).toFixed(1)),
  peakFlops,
  flopsPerToken,
  runs: [none, occam].map((run) => ({
    label: run.label,
    wallMs: run.wallMs,
    summary: run.summary,
    metrics: run.metrics.map((m) => ({ ...m, ...throughput(m) })),
  })),
  sample: prompt + sample,
};
const written = writeResults(
  config.seed === 1 ? 'ogd-gpt' : `ogd-gpt-seed${config.seed}`,
  result,
  `${lines.join('\n')}\n\nTotal time ${result.totalMinutes} min; load average at start ${startMachine.loadAverage.join(' / ')}.\n`,
);
console.log(`\nwrote ${written.md} and ${written.json}`);
process.exit(0);

/** Tokens per second of a round's training steps (the cluster's) and MFU against the measured peak. */
function throughput(m: RoundMetrics): { tokensPerSecond: number; mfu: number | null } {
  const stepSeconds = (m.stepMs.compute + m.stepMs.allreduce + m.stepMs.wait + m.stepMs.update) / 1000;
  const tokensPerSecond = stepSeconds > 0 ? (config.batchSize * config.blockSize) / stepSeconds : 0;
  return { tokensPerSecond, mfu: flopsUtilization(tokensPerSecond, flopsPerToken, peakFlops) };
}

function summaryTable(runs: ExperimentRun[]): string {
  const rows = runs.map((run) => {
    const best = run.summary.best;
    const last = run.metrics[run.metrics.length - 1];
    const total = run.summary.totalCompute;
    return `| ${run.label} | ${best ? best.round : '—'} | ${fmt(best?.holdbackLoss)} | ${fmt(best?.testLoss)} | ${fmt(last?.testLoss)} | ${best ? `${(100 * best.weightsKept).toFixed(1)} %` : '—'} | ${best ? best.activeParams : '—'} | ${best ? best.compute.toExponential(3) : '—'} | ${total.toExponential(3)} | ${(total / (runs[0].summary.totalCompute || 1)).toFixed(2)} | ${(run.wallMs / 1000).toFixed(1)} s |`;
  });
  return [
    '| run | best round | holdback loss | test loss | final test loss | prunable weights kept | active weights | compute to best round | compute, whole run | vs none | wall time |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...rows,
  ].join('\n');
}
