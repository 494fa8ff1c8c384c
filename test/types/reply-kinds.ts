// Type tests, checked by `npm run typecheck` (tsc): a request's reply type follows from its command
// (proto/occam.proto's Worker service), and a wrong pairing does not compile.
import type { WorkerLink } from '../../src/coordinator/worker-link.ts';
import type { Messages } from '../../src/wire/protocol.ts';

export async function replyKinds(link: WorkerLink): Promise<void> {
  const evaluated: Messages['evalResult'] = await link.request('evaluate', { generation: 1 });
  const report: Messages['stateReport'] = await link.request('prune', { generation: 1, thresholds: [0.1] });
  // @ts-expect-error an evaluation's reply is an EvalResult, not Thresholds
  const wrong: Messages['thresholds'] = await link.request('evaluate', { generation: 1 });
  // @ts-expect-error a heartbeat is not a command: it has no reply
  await link.request('heartbeat', { sentMs: 0 });
  // @ts-expect-error the command's message must match its kind
  await link.request('runSteps', { generation: 1 });
  void [evaluated, report, wrong];
}
