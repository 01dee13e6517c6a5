/**
 * Structured JSON logs (one object per line) for every service. Secrets and personal data are
 * redacted by key name wherever they appear in a logged object.
 */
import { pino, type Logger } from "pino";

const REDACTED_KEYS = [
  "privateKey",
  "password",
  "secret",
  "apiKey",
  "token",
  "iban",
  "IBAN",
  "debtorName",
  "mnemonic",
  "authorization",
];

/** `fd` 2 sends the lines to stderr, for command-line tools whose stdout is their result. */
export function createLogger(
  name: string,
  level = process.env.LOG_LEVEL ?? "info",
  fd: 1 | 2 = 1,
): Logger {
  return pino(
    {
      name,
      level,
      redact: {
        paths: REDACTED_KEYS.flatMap((key) => [key, `*.${key}`, `*.*.${key}`]),
        censor: "[redacted]",
      },
      base: { service: name },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    pino.destination(fd),
  );
}

export type { Logger };
