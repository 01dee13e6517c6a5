/**
 * The bank bridge's settings, declared once; `ppu bank --help` and docs/bank.md print this table.
 */
import { readFileSync } from "node:fs";
import { getAddress, type Address, type Hex } from "viem";
import { defineConfig, loadConfig, type Config } from "../shared/config.ts";
import { openDatabase } from "../shared/db.ts";
import { ConfigError, ValidationError } from "../shared/errors.ts";
import { createLogger } from "../shared/logger.ts";
import { BankBridge, type Creditor } from "./bridge.ts";
import { connectBankChain } from "./chain.ts";
import { validateAddress } from "./mandates.ts";
import { normaliseBic, normaliseCreditorId, normaliseIban, toSepaText } from "./sepa.ts";

export const bankConfigSpec = defineConfig({
  RPC_URL: {
    type: "url",
    description: "JSON-RPC endpoint of the chain (needed by sync and import)",
  },
  CONTRACT_ADDRESS: {
    type: "hex",
    required: true,
    description: "address of the PayPerUse contract",
  },
  BANK_PRIVATE_KEY: {
    type: "hex",
    secret: true,
    description:
      "key of the account holding BANK_ROLE, which confirms and returns debits (or BANK_KEY_FILE)",
  },
  BANK_KEY_FILE: {
    type: "path",
    mustExist: true,
    description: "file holding the bank's private key as hex",
  },
  BANK_EUR_TOKENS: {
    type: "string",
    description: "comma-separated euro token addresses; debits in other tokens are not exported",
  },
  CREDITOR_NAME: {
    type: "string",
    required: true,
    description: "creditor name on the direct debits",
  },
  CREDITOR_IBAN: {
    type: "string",
    required: true,
    description: "account the collections are credited to",
  },
  CREDITOR_BIC: {
    type: "string",
    description: "BIC of the creditor's bank (optional inside the EEA)",
  },
  CREDITOR_ID: {
    type: "string",
    required: true,
    description: "SEPA creditor identifier, e.g. DE98ZZZ09999999999 (check digits are verified)",
  },
  CREDITOR_TOWN: {
    type: "string",
    required: true,
    description: "creditor's town (structured address)",
  },
  CREDITOR_COUNTRY: {
    type: "string",
    required: true,
    description: "creditor's ISO 3166 country code",
  },
  CREDITOR_STREET: { type: "string", description: "creditor's street" },
  CREDITOR_BUILDING: { type: "string", description: "creditor's building number" },
  CREDITOR_POSTCODE: { type: "string", description: "creditor's post code" },
  BANK_LEAD_DAYS: {
    type: "number",
    default: 1,
    min: 1,
    max: 10,
    description:
      "TARGET2 business days between export and collection date (the rulebook's D-1 is 1)",
  },
  BANK_OUT_DIR: {
    type: "path",
    default: ".data/bank/out",
    description: "where pain.008 files are written",
  },
  BANK_START_BLOCK: {
    type: "number",
    default: 0,
    min: 0,
    description: "block to start following events from",
  },
  BANK_CONFIRMATIONS: {
    type: "number",
    default: 0,
    min: 0,
    description: "blocks a request must be buried under before it is exported",
  },
  DATABASE_URL: {
    type: "url",
    secret: true,
    description: "PostgreSQL URL of the mandate and debit store; the embedded engine when empty",
  },
  BANK_DATA_DIR: {
    type: "path",
    default: ".data/bank/db",
    description: "data directory of the embedded store ('memory' keeps it in memory)",
  },
  LOG_LEVEL: {
    type: "string",
    default: "warn",
    choices: ["fatal", "error", "warn", "info", "debug", "trace", "silent"],
    description: "least severe log level written (JSON lines on stderr)",
  },
});

export type BankConfig = Config<typeof bankConfigSpec>;

export function creditorFromConfig(config: BankConfig): Creditor {
  const problems: string[] = [];
  const attempt = <T>(work: () => T): T | undefined => {
    try {
      return work();
    } catch (error) {
      problems.push((error as Error).message);
      return undefined;
    }
  };
  const address = validateAddress(
    {
      town: config.CREDITOR_TOWN,
      country: config.CREDITOR_COUNTRY,
      street: config.CREDITOR_STREET,
      buildingNumber: config.CREDITOR_BUILDING,
      postCode: config.CREDITOR_POSTCODE,
    },
    "creditor",
    problems,
  );
  const creditor = {
    name: toSepaText(config.CREDITOR_NAME, 70),
    iban: attempt(() => normaliseIban(config.CREDITOR_IBAN)) ?? "",
    creditorId: attempt(() => normaliseCreditorId(config.CREDITOR_ID)) ?? "",
    address,
    ...(config.CREDITOR_BIC ? { bic: attempt(() => normaliseBic(config.CREDITOR_BIC!)) } : {}),
  };
  if (problems.length > 0) {
    throw new ConfigError("Invalid creditor settings", { details: problems.join("\n") });
  }
  return creditor as Creditor;
}

function eurTokens(list: string): Address[] {
  return list
    .split(",")
    .map((entry) => entry.trim())
    .filter(Boolean)
    .map((entry) => {
      try {
        return getAddress(entry);
      } catch {
        throw new ConfigError(`BANK_EUR_TOKENS: "${entry}" is not an address`);
      }
    });
}

/** Opens the store and, when RPC_URL is set, the chain: what every bank command works with. */
export async function openBankBridge(
  env: Record<string, string | undefined> = process.env,
  options: { needChain?: boolean } = {},
): Promise<{ bridge: BankBridge; close: () => Promise<void> }> {
  const config = loadConfig(bankConfigSpec, env);
  const creditor = creditorFromConfig(config);
  let bankKey = config.BANK_PRIVATE_KEY as Hex | undefined;
  if (!bankKey && config.BANK_KEY_FILE)
    bankKey = readFileSync(config.BANK_KEY_FILE, "utf8").trim() as Hex;
  if (bankKey && !/^0x[0-9a-fA-F]{64}$/.test(bankKey)) {
    throw new ConfigError("The bank's key must be 32 bytes of hex (0x…)");
  }
  if (options.needChain && !config.RPC_URL) {
    throw new ValidationError("this command needs the chain: set RPC_URL");
  }
  const contract = getAddress(config.CONTRACT_ADDRESS);
  const chain = config.RPC_URL
    ? await connectBankChain({ rpcUrl: config.RPC_URL, contract, ...(bankKey ? { bankKey } : {}) })
    : undefined;
  const db = await openDatabase({
    url: config.DATABASE_URL,
    dataDir: config.BANK_DATA_DIR === "memory" ? undefined : config.BANK_DATA_DIR,
  });
  const bridge = await BankBridge.open({
    db,
    chain,
    contract,
    creditor,
    eurTokens: eurTokens(config.BANK_EUR_TOKENS ?? ""),
    leadDays: config.BANK_LEAD_DAYS,
    outDir: config.BANK_OUT_DIR,
    startBlock: BigInt(config.BANK_START_BLOCK),
    confirmations: config.BANK_CONFIRMATIONS,
    logger: createLogger("bank", config.LOG_LEVEL, 2),
  });
  return { bridge, close: () => db.close() };
}
