// One pino logger per process, with role, rank and run id on every line. JSON by default (for
// log collectors); OCCAM_LOG_FORMAT=pretty or --pretty-logs gives one readable line per event.
// A worker learns its run id (welcome) and rank (each ring) after its logger exists: setLogContext.
import pino, { type Logger } from 'pino';

export type { Logger };

/** Fields that identify a process's place in a run; they change (rank with every ring) while it lives. */
export interface LogContext {
  runId?: string;
  rank?: number;
}

export interface LoggerOptions {
  role: 'coordinator' | 'worker' | 'cli' | 'bench';
  level?: string;
  pretty?: boolean;
  /** Where lines go; defaults to stderr so stdout stays free for progress and results. */
  destination?: NodeJS.WritableStream;
  context?: LogContext;
}

// pino's setBindings appends (a second rank would be a duplicate key), so the changing fields
// live in a mutable object that a mixin copies onto every line, children included.
const contexts = new WeakMap<Logger, LogContext>();

export function createLogger(options: LoggerOptions): Logger {
  const level = options.level ?? process.env.OCCAM_LOG_LEVEL ?? 'info';
  const pretty = options.pretty ?? process.env.OCCAM_LOG_FORMAT === 'pretty';
  const destination = options.destination ?? process.stderr;
  const stream = pretty ? prettyStream(destination) : destination;
  const context: LogContext = { ...options.context };
  const logger = pino(
    { level, base: { role: options.role, pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime, mixin: () => ({ ...context }) },
    stream as pino.DestinationStream,
  );
  contexts.set(logger, context);
  return logger;
}

/** Sets run id and/or rank on every later line of a logger made by createLogger (others are left alone). */
export function setLogContext(log: Logger, fields: LogContext): void {
  const context = contexts.get(log);
  if (context) Object.assign(context, fields);
}

/** Renders pino's JSON lines as "12:00:01 INFO worker rank=1 run=ID message key=value". */
function prettyStream(destination: NodeJS.WritableStream): pino.DestinationStream {
  const levels: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
  return {
    write(line: string) {
      try {
        const { time, level, msg, role, rank, runId, pid: _pid, hostname: _h, ...rest } = JSON.parse(line) as Record<string, unknown>;
        const fields = Object.entries(rest)
          .map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : String(v)}`)
          .join(' ');
        const clock = String(time).slice(11, 19);
        const who = `${role}${rank !== undefined ? ` rank=${rank}` : ''}${runId !== undefined ? ` run=${runId}` : ''}`;
        destination.write(`${clock} ${levels[level as number] ?? level} ${who} ${msg ?? ''}${fields ? ` ${fields}` : ''}\n`);
      } catch {
        destination.write(line);
      }
    },
  };
}
