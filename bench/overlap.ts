// `npm run bench -- overlap`: how much of a 2-worker step is communication nobody hides. Two rank
// processes linked by the real ring train the MLP and the GPT on each backend, once with one
// all-reduce per step (bucketBytes 0) and once in buckets; the exposed communication is the step
// time minus the compute time (forward, backward, gradient read). webgpu runs where an adapter is
// (lavapipe: VK_DRIVER_FILES as the README says); otherwise its rows say why not.
// The two steps alternate, --repeats times, and each figure is the median over those runs: on a
// shared machine a case's compute time moves more between runs than the communication does.
// Options: --steps N (timed steps per run, default 8), --repeats R (default 3), --backends blas,webgpu.
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { OccamConfig } from '../src/config.ts';
import type { OverlapCommand, OverlapReport } from './_overlap-node.ts';
import { benchArgs } from './_steps.ts';

const NODE = fileURLToPath(new URL('./_overlap-node.ts', import.meta.url));
const args = benchArgs();
const STEPS = Number(args.steps ?? 8);
const REPEATS = Number(args.repeats ?? 3);
const BACKENDS = (args.backends ?? 'blas,webgpu').split(',');
const MODELS: { name: string; settings: Partial<OccamConfig>; bucketBytes: number }[] = [
  { name: 'MLP 784-1024-10, batch 128', settings: { model: 'mlp', units: 1024, batchSize: 128 }, bucketBytes: 16 * 1024 },
  {
    name: 'GPT 2×128, block 64, batch 32',
    settings: { model: 'gpt', dataset: 'moby-dick', layers: 2, heads: 4, width: 128, blockSize: 64, dropout: 0, batchSize: 32 },
    bucketBytes: 256 * 1024,
  },
];

type Result = Extract<OverlapReport, { type: 'result' }>;

class RankPair {
  private constructor(private readonly nodes: ChildProcess[]) {}

  static async start(backend: string): Promise<RankPair> {
    const nodes = [0, 1].map((rank) =>
      fork(NODE, [], {
        execArgv: ['--import', 'tsx'],
        env: { ...process.env, OVERLAP_RANK: String(rank), OVERLAP_BACKEND: backend },
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      }),
    );
    const pair = new RankPair(nodes);
    const ports = await Promise.all(nodes.map((node) => pair.next(node, 'port')));
    const members = ports.map((p, rank) => ({ workerId: `rank-${rank}`, host: '127.0.0.1', port: (p as { port: number }).port }));
    await pair.all({ type: 'form', members }, 'formed');
    return pair;
  }

  /** Each rank's result for one case; the slower rank's step is the step. */
  async run(settings: Partial<OccamConfig>): Promise<Result[]> {
    return (await this.all({ type: 'run', settings: { ...settings, workers: 2 }, warmupSteps: 3, steps: STEPS }, 'result')) as Result[];
  }

  stop(): void {
    for (const node of this.nodes) node.send({ type: 'exit' } satisfies OverlapCommand);
  }

  private all(command: OverlapCommand, type: OverlapReport['type']): Promise<OverlapReport[]> {
    const replies = this.nodes.map((node) => this.next(node, type));
    for (const node of this.nodes) node.send(command);
    return Promise.all(replies);
  }

  private next(node: ChildProcess, type: OverlapReport['type']): Promise<OverlapReport> {
    return new Promise((resolve, reject) => {
      const onExit = (code: number | null) => reject(new Error(`rank process exited (${code})`));
      const onMessage = (report: OverlapReport) => {
        if (report.type === 'error') reject(new Error(report.message));
        else if (report.type === type) resolve(report);
        else return;
        node.off('message', onMessage);
        node.off('exit', onExit);
      };
      node.on('message', onMessage);
      node.once('exit', onExit);
    });
  }
}

console.log(
  `# exposed communication of a 2-worker step (${STEPS} steps after 3 of warm-up, the two steps alternating ${REPEATS} times; ms per step on the slower rank, medians)\n`,
);
console.log(
  '| backend | model | step | buckets | step ms | compute ms | update ms | all-reduce ms (ring) | exposed ms (step − compute) | exposed, bucketed / serial | step, bucketed / serial |',
);
console.log('| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
for (const backend of BACKENDS) {
  let pair: RankPair;
  try {
    pair = await RankPair.start(backend);
  } catch (error) {
    console.log(`| ${backend} | — | not run: ${(error as Error).message.split('\n')[0]} | | | | | | | | |`);
    continue;
  }
  for (const model of MODELS) {
    const modes = [
      { step: 'serial', bucketBytes: 0, runs: [] as Result[] },
      { step: 'bucketed', bucketBytes: model.bucketBytes, runs: [] as Result[] },
    ];
    for (let r = 0; r < REPEATS; r++) {
      for (const mode of modes) {
        const results = await pair.run({ ...model.settings, bucketBytes: mode.bucketBytes });
        mode.runs.push(results.reduce((a, b) => (b.stepMs > a.stepMs ? b : a)));
      }
    }
    const exposed = modes.map((mode) => median(mode.runs.map((run) => run.stepMs - run.computeMs)));
    const stepMs = modes.map((mode) => median(mode.runs.map((run) => run.stepMs)));
    for (const [i, { step, runs }] of modes.entries()) {
      const of = (key: 'stepMs' | 'computeMs' | 'updateMs' | 'allreduceMs') => median(runs.map((run) => run[key])).toFixed(1);
      const ratio = i === 0 ? ' | ' : `${(exposed[1] / exposed[0]).toFixed(2)}× | ${(stepMs[1] / stepMs[0]).toFixed(2)}×`;
      console.log(
        `| ${backend} | ${model.name} | ${step} | ${runs[0].buckets} | ${of('stepMs')} | ${of('computeMs')} | ${of('updateMs')} | ${of('allreduceMs')} | ${exposed[i].toFixed(1)} | ${ratio} |`,
      );
    }
  }
  pair.stop();
}
console.log(
  '\nexposed = step − compute: the all-reduce and the update that no computation hides (the update runs while later buckets travel).',
);
process.exit(0);
