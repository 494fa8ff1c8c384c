// What a coordinator shows beyond training: Prometheus metrics at /metrics, the live status page at
// `/` (with /live.json), the run's report.html (rewritten after every round and at the end, and
// served at /report.html). withObservability() wires all of it into a Coordinator's options
// through the RunEvent stream and the httpHandler hook. These routes, like /healthz, /readyz and
// /status.json, need no token: they expose progress, never weights or the token.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { OccamConfig } from '../config.ts';
import type { Logger } from '../common/log.ts';
import type { RunEvent } from './events.ts';
import { CoordinatorMetrics } from './metrics.ts';
import { REPORT_FILE, writeRunReport } from './report.ts';
import { LiveRun, renderStatusPage } from './status-page.ts';

/** What the observability layer reads from, and adds to, a coordinator's options. */
export interface ObservedOptions {
  config: OccamConfig;
  runDir: string;
  runId: string;
  log: Logger;
  onEvent?: (event: RunEvent) => void;
  httpHandler?: (request: IncomingMessage, response: ServerResponse) => boolean;
}

export function withObservability<T extends ObservedOptions>(options: T): T {
  const { config, runDir, runId, log } = options;
  const live = new LiveRun({ runId, runDir, config });
  const metrics = new CoordinatorMetrics({ runId, config });

  // Events arrive inside the coordinator's run loop: what users see must never stop training, so
  // a failure here (a report that cannot be written, say) is a warning.
  const onEvent = (event: RunEvent) => {
    try {
      live.handle(event);
      if (event.type === 'ring') metrics.restore(live.rounds);
      metrics.handle(event);
      if (event.type === 'round' || event.type === 'done') writeRunReport(runDir);
    } catch (error) {
      log.warn({ event: event.type, err: (error as Error).message }, 'status page, metrics or report.html could not be updated');
    }
    options.onEvent?.(event);
  };

  const VIEW_PATHS = ['/', '/index.html', '/live.json', '/metrics', `/${REPORT_FILE}`];
  const serve = (request: IncomingMessage, response: ServerResponse): boolean => {
    const path = (request.url ?? '/').split('?')[0];
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      if (!VIEW_PATHS.includes(path)) return false;
      response.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' });
      response.end(`${request.method} is not allowed on ${path}: these pages are read-only (GET)\n`);
      return true;
    }
    switch (path) {
      case '/':
      case '/index.html':
        return send(response, 200, 'text/html; charset=utf-8', renderStatusPage(live));
      case '/live.json':
        return send(response, 200, 'application/json', JSON.stringify(live.snapshot()));
      case '/metrics':
        metrics.render().then(
          (text) => send(response, 200, metrics.contentType, text),
          (error: Error) => send(response, 500, 'text/plain', `metrics failed: ${error.message}\n`),
        );
        return true;
      case `/${REPORT_FILE}`: {
        const path = join(runDir, REPORT_FILE);
        if (!existsSync(path)) return send(response, 404, 'text/plain', 'no report yet: it is written when the first round finishes\n');
        return send(response, 200, 'text/html; charset=utf-8', readFileSync(path));
      }
      default:
        return false;
    }
  };

  return {
    ...options,
    onEvent,
    httpHandler: (request, response) => options.httpHandler?.(request, response) || serve(request, response),
  };
}

function send(response: ServerResponse, status: number, contentType: string, body: string | Buffer): true {
  response.writeHead(status, { 'content-type': contentType, 'cache-control': 'no-store' });
  response.end(body);
  return true;
}
