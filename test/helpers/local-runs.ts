// Whole runs on in-process replicas (LocalGroup + RunLoop): real rounds, pruning, commits and the
// exported model, in milliseconds rather than the seconds worker processes take.
import type { OccamConfig } from '../../src/config.ts';
import { LocalGroup, type LocalGroupOptions } from '../../src/coordinator/local-group.ts';
import type { ReplicaGroup } from '../../src/coordinator/replica-group.ts';
import { RestartPolicy, runGenerations } from '../../src/coordinator/restart-policy.ts';
import { RunLoop } from '../../src/coordinator/run-loop.ts';
import type { RunEvent } from '../../src/observe/events.ts';
import { readMetrics, RunDir, type RoundMetrics, type RunSummary } from '../../src/storage/run-dir.ts';
import { loadDataSource } from '../../src/training/data/load.ts';
import type { DataSource } from '../../src/training/data/source.ts';
import { Member, type MemberHooks } from '../../src/training/member.ts';
import { createModel } from '../../src/training/models/create.ts';
import type { Model } from '../../src/training/models/model.ts';
import { Replica } from '../../src/training/replica.ts';
import { saveModelInputs } from '../../src/training/trained.ts';
import { quietLog, tempRunDir } from './runs.ts';

export interface LocalRun {
  summary: RunSummary;
  metrics: RoundMetrics[];
  events: RunEvent[];
  digest: string;
  runDir: string;
}

export function loopFor(runDir: string, config: OccamConfig, events: RunEvent[], policy?: RestartPolicy): RunLoop {
  return new RunLoop({
    config,
    runDir: new RunDir(runDir),
    runId: 'local',
    log: quietLog,
    emit: (e) => events.push(e),
    onCommit: () => policy?.committed(),
  });
}

/** A whole run over the groups `form` returns, generation after generation. */
export async function runLocal(
  form: (generation: number) => ReplicaGroup,
  config: OccamConfig,
  runDir = tempRunDir('local'),
): Promise<LocalRun> {
  const events: RunEvent[] = [];
  const policy = new RestartPolicy(8, 1);
  const loop = loopFor(runDir, config, events, policy);
  loop.open();
  saveModelInputs(runDir, dataAndModel(config).data);
  let generation = 0;
  await runGenerations(loop, policy, { form: async () => form(generation++) });
  const summary = loop.finish();
  return { summary, metrics: readMetrics(runDir), events, digest: loop.committed?.digest ?? '', runDir };
}

/** A ring of `workers` in-process members training `config`. */
export function localGroup(
  config: OccamConfig,
  workers: number,
  options: LocalGroupOptions & { hooks?: (rank: number) => MemberHooks } = {},
): LocalGroup {
  const { data, model } = dataAndModel(config);
  const members = Array.from({ length: workers }, (_, rank) => new Member(new Replica(model, data, config), config, options.hooks?.(rank)));
  return new LocalGroup(members, config, options);
}

/** The data and model of a config, loaded once and shared read-only by every member. */
const built = new Map<OccamConfig, { data: DataSource; model: Model }>();
function dataAndModel(config: OccamConfig): { data: DataSource; model: Model } {
  if (!built.has(config)) {
    const data = loadDataSource(config);
    built.set(config, { data, model: createModel(config, data) });
  }
  return built.get(config) as { data: DataSource; model: Model };
}
