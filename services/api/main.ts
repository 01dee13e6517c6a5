/**
 * Runs the indexer and the API from the environment (see `--help` or docs/api.md). SIGINT/SIGTERM
 * stop it gracefully.
 */
import { BaseError, createPublicClient, getAddress, http, type PublicClient } from "viem";
import { openBankBridge } from "../bank/config.ts";
import { Indexer } from "../indexer/indexer.ts";
import { payPerUseAbi } from "../shared/artifacts.ts";
import { describeConfig, loadConfig } from "../shared/config.ts";
import { openDatabase } from "../shared/db.ts";
import { chainFor } from "../shared/deployment.ts";
import { PpuError } from "../shared/errors.ts";
import { createLogger } from "../shared/logger.ts";
import { Auth } from "./auth.ts";
import { apiConfigSpec } from "./config.ts";
import { buildApi } from "./server.ts";

if (process.argv.includes("--help")) {
  console.log(
    `Usage: tsx services/api/main.ts\n\nSettings (environment variables):\n${describeConfig(apiConfigSpec)}`,
  );
  process.exit(0);
}

try {
  const config = loadConfig(apiConfigSpec);
  const log = createLogger("api", config.LOG_LEVEL);
  const chain = await chainFor(config.RPC_URL);
  const db = await openDatabase({
    url: config.DATABASE_URL,
    dataDir: config.API_DATA_DIR === "memory" ? undefined : config.API_DATA_DIR,
  });
  const indexer = await Indexer.open({
    db,
    client: createPublicClient({ chain, transport: http(config.RPC_URL) }) as PublicClient,
    address: getAddress(config.CONTRACT_ADDRESS),
    abi: payPerUseAbi(),
    startBlock: BigInt(config.START_BLOCK),
    confirmations: config.CONFIRMATIONS,
    pollMs: config.POLL_MS,
    log,
  });
  indexer.start();
  const auth = await Auth.open(db, {
    domain: config.API_DOMAIN,
    chainId: chain.id,
    adminToken: config.API_ADMIN_TOKEN,
  });
  const bank = process.env.CREDITOR_ID
    ? await openBankBridge(process.env, { needChain: true })
    : undefined;
  const app = await buildApi({
    db,
    auth,
    indexer,
    bridge: bank?.bridge,
    rateLimitPerMinute: config.RATE_LIMIT_PER_MINUTE,
  });
  const url = await app.listen({ port: config.PORT, host: config.HOST });
  console.log(`API listening on ${url} (OpenAPI at ${url}/docs)${bank ? ", SEPA routes on" : ""}`);
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) process.exit(1);
    stopping = true;
    console.error(`${signal}: stopping`);
    await app.close();
    await indexer.stop();
    await bank?.close();
    await db.close();
    process.exit(0);
  };
  process.on("SIGINT", () => void stop("SIGINT"));
  process.on("SIGTERM", () => void stop("SIGTERM"));
} catch (error) {
  if (error instanceof PpuError) console.error(error.message);
  else if (error instanceof BaseError) {
    console.error(
      `${error.shortMessage}${error.details ? ` ${error.details}` : ""} (check RPC_URL and the node)`,
    );
  } else console.error(error);
  process.exit(1);
}
