// One pino logger per process, with role, rank and run id on every line. JSON by default (for
// log collectors); OCCAM_LOG_FORMAT=pretty or --pretty-logs gives one readable line per event.
import pino, { type Logger } from 'pino';

export type { Logger };

export interface LoggerOptions {
  role: 'coordinator' | 'worker' | 'cli' | 'bench';
  level?: string;
  pretty?: boolean;
  /** Where lines go; defaults to stderr so stdout stays free for progress and results. */
  destination?: NodeJS.WritableStream;
}

export function createLogger(options: LoggerOptions): Logger {
  const level = options.level ?? process.env.OCCAM_LOG_LEVEL ?? 'info';
  const pretty = options.pretty ?? process.env.OCCAM_LOG_FORMAT === 'pretty';
  const destination = options.destination ?? process.stderr;
  const stream = pretty ? prettyStream(destination) : destination;
  return pino({ level, base: { role: options.role, pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, stream as pino.DestinationStream);
}

/** Renders pino's JSON lines as "12:00:01 INFO coordinator rank=0 message key=value". */
function prettyStream(destination: NodeJS.WritableStream): pino.DestinationStream {
  const levels: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
  return {
    write(line: string) {
      try {
        const { time, level, msg, role, pid: _pid, hostname: _h, ...rest } = JSON.parse(line) as Record<string, unknown>;
        const fields = Object.entries(rest)
          .map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : String(v)}`)
          .join(' ');
        const clock = String(time).slice(11, 19);
        destination.write(`${clock} ${levels[level as number] ?? level} ${role} ${msg ?? ''}${fields ? ` ${fields}` : ''}\n`);
      } catch {
        destination.write(line);
      }
    },
  };
}
