/**
 * The API server's settings, declared once; `tsx services/api/main.ts --help` and docs/api.md print
 * this table. With the bank bridge's settings (CREDITOR_ID …, see docs/bank.md) it also serves the
 * SEPA routes.
 */
import { defineConfig, type Config } from "../shared/config.ts";

export const apiConfigSpec = defineConfig({
  RPC_URL: { type: "url", required: true, description: "JSON-RPC endpoint of the chain" },
  CONTRACT_ADDRESS: {
    type: "hex",
    required: true,
    description: "address of the PayPerUse contract",
  },
  START_BLOCK: {
    type: "number",
    default: 0,
    min: 0,
    description: "block the indexer starts from (the deployment's)",
  },
  CONFIRMATIONS: {
    type: "number",
    default: 0,
    min: 0,
    description: "blocks the indexer stays behind the head",
  },
  DATABASE_URL: {
    type: "url",
    secret: true,
    description:
      "PostgreSQL URL of the index and the API's sessions, keys and grants; the embedded engine when empty",
  },
  API_DATA_DIR: {
    type: "path",
    default: ".data/api",
    description: "data directory of the embedded store ('memory' keeps it in memory)",
  },
  PORT: { type: "number", default: 8080, min: 0, max: 65535, description: "HTTP port" },
  HOST: { type: "string", default: "127.0.0.1", description: "address to listen on" },
  API_DOMAIN: {
    type: "string",
    default: "localhost:8080",
    description: "the domain Sign-In with Ethereum messages must name (host[:port] users see)",
  },
  API_ADMIN_TOKEN: {
    type: "string",
    secret: true,
    description: "the operator's bearer token (issues API keys); none when empty",
  },
  RATE_LIMIT_PER_MINUTE: {
    type: "number",
    default: 1200,
    min: 1,
    description: "requests per minute per key, session or address",
  },
  POLL_MS: {
    type: "number",
    default: 1000,
    min: 50,
    description: "how often the indexer reads new blocks",
  },
  LOG_LEVEL: {
    type: "string",
    default: "info",
    choices: ["fatal", "error", "warn", "info", "debug", "trace", "silent"],
    description: "least severe log level written (JSON lines on stdout)",
  },
});

export type ApiConfig = Config<typeof apiConfigSpec>;
