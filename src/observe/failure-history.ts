// The report's failure history: what events.jsonl holds, counted (restarts, lost and excluded
// workers, resynchronised replicas, coordinator restarts and the outage between them) and listed
// in order, so an operator sees what a long run lived through without reading logs.
import { failureCounts, type FailureEvent } from '../storage/failure-log.ts';
import { escapeXml } from './plots.ts';

/** Events worth listing: everything but commits and a run's first coordinator start. */
export function notableFailures(events: readonly FailureEvent[]): FailureEvent[] {
  return events.filter((e, i) => e.type !== 'commit' && !(e.type === 'coordinator-start' && i === 0));
}

/** The section for one run; empty when nothing happened. */
export function failureHistorySection(name: string, events: readonly FailureEvent[]): string {
  const notable = notableFailures(events);
  if (notable.length === 0) return '';
  const counts = failureCounts(events);
  const line = [
    `${counts.restarts} ring re-formation(s)`,
    `${counts.workersLost} worker(s) lost`,
    `${counts.exclusions} exclusion(s)`,
    `${counts.resyncs} resync(s)`,
    `${counts.coordinatorRestarts} coordinator restart(s), ${(counts.outageMs / 1000).toFixed(1)} s without one`,
  ].join(' · ');
  const rows = notable.map((e) => {
    const time = new Date(e.timeMs).toISOString().replace('T', ' ').slice(0, 19);
    return `<tr><td>${time}</td><td>${escapeXml(e.type)}</td><td>${escapeXml(describe(e))}</td></tr>`;
  });
  const table = `<div class="scroll"><table><thead><tr><th>time (UTC)</th><th>event</th><th>what</th></tr></thead><tbody>${rows.join('')}</tbody></table></div>`;
  return `<section><details><summary>Failure history of ${escapeXml(name)}: ${escapeXml(line)}</summary>${table}</details></section>`;
}

function describe(event: FailureEvent): string {
  switch (event.type) {
    case 'restart':
      return `${event.reason} (from the commit at step ${event.committedStep})`;
    case 'worker-lost':
    case 'resync':
      return `${event.worker}: ${event.reason}`;
    case 'excluded':
      return `${event.worker} for ${Math.round(event.forMs / 1000)} s: ${event.reason}`;
    case 'coordinator-stop':
      return event.reason;
    case 'coordinator-start':
      return 'a coordinator resumed the run from its last commit';
    case 'commit':
      return `step ${event.step}`;
  }
}
