/**
 * The oracle's settings, declared once: description, type, default, secrecy. `ppu oracle start --help`
 * and docs/oracle.md print this table.
 */
import { readFileSync } from "node:fs";
import type { Hex } from "viem";
import { defineConfig, loadConfig, type Config } from "../shared/config.ts";
import { ConfigError } from "../shared/errors.ts";
import { decryptKeystore, readPasswordFile } from "./keystore.ts";

export const oracleConfigSpec = defineConfig({
  RPC_URL: { type: "url", required: true, description: "JSON-RPC endpoint of the chain" },
  CONTRACT_ADDRESS: {
    type: "hex",
    required: true,
    description: "address of the PayPerUse contract",
  },
  ORACLE_PRIVATE_KEY: {
    type: "hex",
    secret: true,
    description: "transaction and attestation key of this instance (or ORACLE_KEY_FILE)",
  },
  ORACLE_KEY_FILE: {
    type: "path",
    mustExist: true,
    description: "file holding the private key as hex",
  },
  MQTT_URL: {
    type: "url",
    description:
      "broker URL (mqtt://, mqtts://, ws://); an embedded broker on a free port when empty",
  },
  MQTT_PROTOCOL_VERSION: {
    type: "number",
    default: 5,
    min: 4,
    max: 5,
    description: "5 (shared subscriptions) or 4 for brokers that speak only MQTT 3.1.1",
  },
  MQTT_CONNECTIONS: {
    type: "number",
    default: 1,
    min: 1,
    max: 64,
    description:
      "connections in the shared subscription (MQTT 5); more spread the broker's deliveries, but one machine's readings may then arrive out of order",
  },
  MQTT_IN_FLIGHT: {
    type: "number",
    default: 256,
    min: 1,
    max: 65535,
    description:
      "readings one connection holds unacknowledged while they are checked and journaled (MQTT 5 Receive Maximum)",
  },
  MQTT_USERNAME: { type: "string", description: "broker user name" },
  MQTT_PASSWORD: { type: "string", secret: true, description: "broker password" },
  MQTT_CA_FILE: { type: "path", mustExist: true, description: "CA certificate for TLS brokers" },
  MQTT_SHARE_GROUP: {
    type: "string",
    default: "ppu-oracle",
    description: "MQTT 5 shared-subscription group: instances in one group split the readings",
  },
  DATABASE_URL: {
    type: "url",
    secret: true,
    description: "PostgreSQL URL of the journal; the embedded engine when empty",
  },
  DATA_DIR: {
    type: "path",
    default: ".data/oracle",
    description: "data directory of the embedded journal ('memory' keeps it in memory)",
  },
  BATCH_INTERVAL_MS: {
    type: "number",
    default: 1000,
    min: 50,
    description: "how often the batch is submitted",
  },
  BATCH_MAX_READINGS: {
    type: "number",
    default: 100,
    min: 1,
    max: 500,
    description: "readings per transaction",
  },
  CONFIRMATIONS: {
    type: "number",
    default: 1,
    min: 1,
    description: "blocks to wait before a reading counts as settled",
  },
  VERIFY_THREADS: {
    type: "number",
    default: 1,
    min: 0,
    max: 64,
    description:
      "worker threads checking device signatures; 0 checks them on the event loop (one core per thread, at most)",
  },
  FUTURE_TOLERANCE_S: {
    type: "number",
    default: 300,
    min: 0,
    description: "how far a reading's timestamp may lie ahead of this clock",
  },
  ORACLE_KEYSTORE: {
    type: "path",
    mustExist: true,
    description:
      "encrypted key file (Web3 Secret Storage JSON, `ppu oracle keystore create`) instead of a plain key",
  },
  ORACLE_KEYSTORE_PASSWORD: {
    type: "string",
    secret: true,
    description: "password of ORACLE_KEYSTORE (or ORACLE_KEYSTORE_PASSWORD_FILE)",
  },
  ORACLE_KEYSTORE_PASSWORD_FILE: {
    type: "path",
    mustExist: true,
    description: "file holding the password of ORACLE_KEYSTORE (its first line)",
  },
  STUCK_TX_MS: {
    type: "number",
    default: 30000,
    min: 100,
    description: "a submission not mined within this time is sent again with fees raised by 12.5 %",
  },
  MAX_FEE_GWEI: {
    type: "number",
    default: 500,
    min: 0.000000001,
    description: "ceiling of maxFeePerGas, for the first send and every replacement",
  },
  REORG_WINDOW_BLOCKS: {
    type: "number",
    default: 64,
    min: 0,
    description:
      "settled readings are re-checked for this many blocks and submitted again if their transaction left the chain (0 = never)",
  },
  LOG_LEVEL: {
    type: "string",
    default: "info",
    choices: ["fatal", "error", "warn", "info", "debug", "trace", "silent"],
    description: "least severe log level written (JSON lines on stdout)",
  },
  HEALTH_PORT: {
    type: "number",
    default: 9464,
    min: -1,
    max: 65535,
    description: "port of /metrics, /healthz and /readyz on 127.0.0.1 (0 = a free port, -1 = none)",
  },
  CHAIN_POLL_MS: {
    type: "number",
    default: 1000,
    min: 50,
    description: "how often contract events are read",
  },
});

export type OracleConfig = Config<typeof oracleConfigSpec> & { privateKey: Hex };

/** Loads and checks the configuration; the key comes from the variable or the file, never logged. */
export function loadOracleConfig(
  env: Record<string, string | undefined> = process.env,
): OracleConfig {
  const config = loadConfig(oracleConfigSpec, env);
  let privateKey = config.ORACLE_PRIVATE_KEY as Hex | undefined;
  if (config.ORACLE_KEYSTORE) {
    privateKey = keyFromKeystore(config);
  } else if (config.ORACLE_KEYSTORE_PASSWORD || config.ORACLE_KEYSTORE_PASSWORD_FILE) {
    throw new ConfigError("A keystore password is set but no keystore", {
      details: "Set ORACLE_KEYSTORE to the encrypted key file, or drop the password setting.",
    });
  }
  if (!privateKey && config.ORACLE_KEY_FILE) {
    privateKey = readFileSync(config.ORACLE_KEY_FILE, "utf8").trim() as Hex;
  }
  if (!privateKey || !/^0x[0-9a-fA-F]{64}$/.test(privateKey)) {
    throw new ConfigError("The oracle needs its private key", {
      details:
        "Set ORACLE_KEYSTORE (with its password), or ORACLE_PRIVATE_KEY or ORACLE_KEY_FILE to a 32-byte hex key (0x…).",
    });
  }
  return { ...config, privateKey };
}

/** Decrypts ORACLE_KEYSTORE with its password; exactly one key source and one password source. */
function keyFromKeystore(config: Config<typeof oracleConfigSpec>): Hex {
  const keystore = config.ORACLE_KEYSTORE!;
  if (config.ORACLE_PRIVATE_KEY || config.ORACLE_KEY_FILE) {
    throw new ConfigError("More than one oracle key is configured", {
      details: "Set either ORACLE_KEYSTORE or ORACLE_PRIVATE_KEY / ORACLE_KEY_FILE, not both.",
    });
  }
  if (config.ORACLE_KEYSTORE_PASSWORD && config.ORACLE_KEYSTORE_PASSWORD_FILE) {
    throw new ConfigError("The keystore password is set twice", {
      details: "Set either ORACLE_KEYSTORE_PASSWORD or ORACLE_KEYSTORE_PASSWORD_FILE, not both.",
    });
  }
  const password = config.ORACLE_KEYSTORE_PASSWORD_FILE
    ? readPasswordFile(config.ORACLE_KEYSTORE_PASSWORD_FILE)
    : config.ORACLE_KEYSTORE_PASSWORD;
  if (!password) {
    throw new ConfigError(`The keystore ${keystore} needs its password`, {
      details:
        "Set ORACLE_KEYSTORE_PASSWORD, or ORACLE_KEYSTORE_PASSWORD_FILE to a file holding it.",
    });
  }
  return decryptKeystore(keystore, password).privateKey;
}
