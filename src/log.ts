/**
 * The logger interface every component takes, and the winston logger that
 * the composition root builds. Components log through child loggers that add
 * their own fields (component, kernel id) and never import winston.
 */
import winston from 'winston';

/** Logger is the small interface components log through. */
export interface Logger {
  /** Logs a failure that needs an operator. */
  error(message: string, fields?: Record<string, unknown>): void;
  /** Logs something wrong that the agent works around. */
  warn(message: string, fields?: Record<string, unknown>): void;
  /** Logs a step of the agent's life (start, registration, kernels). */
  info(message: string, fields?: Record<string, unknown>): void;
  /** Logs detail for debugging, shown at --log-level debug. */
  debug(message: string, fields?: Record<string, unknown>): void;
  /** A logger that adds `fields` to every line. */
  child(fields: Record<string, unknown>): Logger;
}

export type LogLevel = 'error' | 'warn' | 'info' | 'debug';
export type LogFormat = 'text' | 'json';

/** Options of {@link createLogger}. */
export interface LogOptions {
  level: LogLevel;
  format: LogFormat;
  /** Where lines go; stderr by default so that stdout stays free for command output. */
  stream?: NodeJS.WritableStream;
}

const textFormat = winston.format.printf((info) => {
  const { level, message, timestamp, component, ...rest } = info as Record<string, unknown>;
  const where = component ? ` [${String(component)}]` : '';
  const fields = Object.entries(rest)
    .filter(([k]) => typeof k === 'string')
    .map(([k, v]) => `${k}=${typeof v === 'string' && !/\s/.test(v) ? v : JSON.stringify(v)}`)
    .join(' ');
  return `${String(timestamp)} ${String(level)}${where} ${String(message)}${fields ? ' ' + fields : ''}`;
});

/** createLogger builds the one winston logger of a process: text for a terminal, JSON lines for machines. */
export function createLogger(options: LogOptions): Logger {
  const format =
    options.format === 'json'
      ? winston.format.combine(winston.format.timestamp(), winston.format.json())
      : winston.format.combine(winston.format.timestamp(), textFormat);
  return winston.createLogger({
    level: options.level,
    format,
    transports: [new winston.transports.Stream({ stream: options.stream ?? process.stderr })],
  });
}

/** silentLogger is a logger that drops everything, for tests and library use without logging. */
export function silentLogger(): Logger {
  return winston.createLogger({ silent: true, transports: [new winston.transports.Console({ silent: true })] });
}
