/**
 * `npm start`: the whole system on one machine with nothing installed but Node.js.
 *
 * An in-process Hardhat chain served as JSON-RPC on localhost, the contracts deployed to it, the
 * oracle with its embedded MQTT broker and journal, the indexer and the API, a simulated fleet with
 * both key types, the bank bridge with a simulated bank (the lessee's SEPA mandate, settlement every
 * 20 s, pain.008 out and camt.054 back), and the live dashboard. Ctrl-C stops everything in reverse order; a second Ctrl-C
 * exits at once.
 *
 * Settings: PORT (dashboard and API, default 8080), RPC_PORT (JSON-RPC, default 8545), MACHINES
 * (default 6), LOG_LEVEL (oracle logs, default warn), BANK_OUT_DIR (SEPA files, default
 * .data/start/bank), API_ADMIN_TOKEN (the operator's API token; a random one is printed otherwise).
 */
import { createPublicClient, createWalletClient, http, type Abi } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { randomBytes } from "node:crypto";
import type { PublicClient } from "viem";
import { Auth } from "./api/auth.ts";
import { registerDashboard } from "./api/dashboard.ts";
import { buildApi } from "./api/server.ts";
import { Indexer } from "./indexer/indexer.ts";
import { LiveView } from "./api/live-view.ts";
import { createOracle } from "./oracle/service.ts";
import { loadOracleConfig } from "./oracle/config.ts";
import { BankBridge } from "./bank/bridge.ts";
import { connectBankChain } from "./bank/chain.ts";
import { loadArtifact, payPerUseAbi } from "./shared/artifacts.ts";
import { openDatabase } from "./shared/db.ts";
import { chainFor } from "./shared/deployment.ts";
import { startEmbeddedDeployment } from "./shared/devchain.ts";
import { DEMO_CREDITOR, startBankSimulation } from "./sim/bank.ts";
import { startFleet } from "./sim/fleet.ts";

const port = Number(process.env.PORT ?? 8080);
const rpcPort = Number(process.env.RPC_PORT ?? 8545);
const step = (message: string) => console.log(`• ${message}`);

const stops: { name: string; stop: () => Promise<void> }[] = [];
let stopping = false;
async function shutdown(code: number): Promise<never> {
  stopping = true;
  for (const { name, stop } of stops.reverse()) {
    try {
      await stop();
      step(`${name} stopped`);
    } catch (error) {
      console.error(
        `${name} did not stop cleanly:`,
        error instanceof Error ? error.message : error,
      );
    }
  }
  process.exit(code);
}
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    if (stopping) {
      console.error("stopping again: exiting now");
      process.exit(1);
    }
    console.log(`\n${signal}: stopping (press Ctrl-C again to force)`);
    void shutdown(0);
  });
}

try {
  const { chain, deployment, roles } = await startEmbeddedDeployment({
    port: rpcPort,
    onProgress: step,
  });
  stops.push({ name: "chain", stop: () => chain.stop() });
  const { deployer, bank, owner, lessee, oracleSigner } = roles;

  const oracle = createOracle(
    loadOracleConfig({
      RPC_URL: chain.rpcUrl,
      CONTRACT_ADDRESS: deployment.payPerUse,
      ORACLE_PRIVATE_KEY: oracleSigner.privateKey,
      DATA_DIR: "memory",
      HEALTH_PORT: process.env.HEALTH_PORT ?? "0",
      BATCH_INTERVAL_MS: "1000",
      CHAIN_POLL_MS: "500",
      LOG_LEVEL: process.env.LOG_LEVEL ?? "warn",
    }),
  );
  await oracle.start();
  stops.push({ name: "oracle", stop: () => oracle.stop() });
  step(`oracle listening on the embedded broker ${oracle.brokerUrl}`);

  const view = new LiveView(chain.rpcUrl, deployment.payPerUse, deployment.deployBlock, 500);
  view.start();
  stops.push({ name: "event follower", stop: () => view.stop() });

  const fleet = await startFleet({
    rpcUrl: chain.rpcUrl,
    brokerUrl: oracle.brokerUrl,
    payPerUse: deployment.payPerUse,
    token: deployment.token,
    tokenOwnerKey: deployer.privateKey,
    ownerKey: owner.privateKey,
    lesseeKey: lessee.privateKey,
    machines: Number(process.env.MACHINES ?? 6),
    onProgress: step,
  });
  stops.push({ name: "fleet", stop: () => fleet.stop() });

  // The bank bridge: the lessee's SEPA mandate on every agreement, settlement every 20 s (which asks
  // for a direct debit when an escrow ran dry), and a simulated bank answering each pain.008.
  const outDir = process.env.BANK_OUT_DIR ?? ".data/start/bank";
  const bankDb = await openDatabase();
  stops.push({ name: "bank store", stop: () => bankDb.close() });
  const creditor = DEMO_CREDITOR;
  const bridge = await BankBridge.open({
    db: bankDb,
    chain: await connectBankChain({
      rpcUrl: chain.rpcUrl,
      contract: deployment.payPerUse,
      bankKey: bank.privateKey,
    }),
    creditor,
    eurTokens: [deployment.token],
    outDir,
  });
  const mandate = await bridge.addMandate({
    mandateId: "DEMO-LESSEE-0001",
    signedOn: new Date().toISOString().slice(0, 10),
    debtorName: "Jörg Müller Bau GmbH",
    iban: "DE89370400440532013000",
    address: {
      street: "Domstraße",
      buildingNumber: "1",
      postCode: "50667",
      town: "Köln",
      country: "DE",
    },
  });
  const chainDef = await chainFor(chain.rpcUrl);
  const wallet = (key: `0x${string}`) =>
    createWalletClient({
      account: privateKeyToAccount(key),
      chain: chainDef,
      transport: http(chain.rpcUrl),
    });
  const writer = createPublicClient({ chain: chainDef, transport: http(chain.rpcUrl) });
  const abi = payPerUseAbi();
  for (const m of fleet.machines) {
    const hash = await wallet(lessee.privateKey).writeContract({
      address: deployment.payPerUse,
      abi,
      functionName: "setMandate",
      args: [m.agreementId, mandate.mandateRef],
    } as never);
    await writer.waitForTransactionReceipt({ hash });
  }
  const minted = await wallet(deployer.privateKey).writeContract({
    address: deployment.token,
    abi: loadArtifact("MockEURC").abi as Abi,
    functionName: "mint",
    args: [bank.address, 10n ** 15n],
  } as never);
  await writer.waitForTransactionReceipt({ hash: minted });
  step(`bank bridge: mandate ${mandate.mandateId} attached to ${fleet.machines.length} agreements`);
  const settleTimer = setInterval(() => {
    wallet(owner.privateKey)
      .writeContract({
        address: deployment.payPerUse,
        abi,
        functionName: "settle",
        args: [fleet.machines.map((m) => m.agreementId)],
      } as never)
      .catch((error: unknown) =>
        step(`settlement failed: ${error instanceof Error ? error.message : error}`),
      );
  }, 20_000);
  stops.push({ name: "settlement", stop: async () => clearInterval(settleTimer) });
  const bankSim = startBankSimulation({
    bridge,
    accountIban: creditor.iban,
    outDir,
    everyMs: 10_000,
    returnEvery: 4,
    onProgress: step,
  });
  stops.push({ name: "bank bridge", stop: () => bankSim.stop() });

  const client = createPublicClient({ transport: http(chain.rpcUrl) });
  let block = 0n;
  const blockTimer = setInterval(() => {
    client.getBlockNumber().then(
      (n) => (block = n),
      () => {},
    );
  }, 1000);
  stops.push({ name: "block watcher", stop: async () => clearInterval(blockTimer) });

  // The API: the indexer fills its own store from the chain; the dashboard is served by the same server.
  const apiDb = await openDatabase();
  stops.push({ name: "API store", stop: () => apiDb.close() });
  const indexer = await Indexer.open({
    db: apiDb,
    client: createPublicClient({ chain: chainDef, transport: http(chain.rpcUrl) }) as PublicClient,
    address: deployment.payPerUse,
    abi,
    startBlock: deployment.deployBlock,
    pollMs: 500,
  });
  indexer.start();
  stops.push({ name: "indexer", stop: () => indexer.stop() });
  const adminToken = process.env.API_ADMIN_TOKEN ?? randomBytes(18).toString("base64url");
  const auth = await Auth.open(apiDb, {
    domain: `localhost:${port}`,
    chainId: chain.chainId,
    adminToken,
  });
  const app = await buildApi({
    db: apiDb,
    auth,
    indexer,
    bridge,
    extend: (server) =>
      registerDashboard(server, {
        view,
        names: new Map(fleet.machines.map((m) => [m.machineId, `${m.name} (${m.keyType})`])),
        health: () => ({
          ...oracle.stats,
          block: block.toString(),
          indexedBlock: indexer.head.toString(),
        }),
        debits: async () =>
          (
            await apiDb.query<Record<string, unknown>>(
              `SELECT d.debit_id::text AS "debitId", d.agreement_id::text AS "agreementId", d.amount::text AS amount,
                      d.due_date::text AS "dueDate", d.status, d.return_reason AS "returnReason"
               FROM idx_debits d ORDER BY d.debit_id DESC LIMIT 20`,
            )
          ).rows,
      }),
  });
  await app.listen({ port, host: "127.0.0.1" });
  stops.push({ name: "API and dashboard", stop: () => app.close() });

  console.log(
    `\nPayPerUse ${deployment.payPerUse}, token ${deployment.token}, ${fleet.machines.length} machines metering.`,
  );
  console.log(`SEPA files (pain.008 out, camt.054 in): ${outDir}`);
  console.log(`API: http://localhost:${port}/docs (operator token: ${adminToken})`);
  console.log(`Dashboard: http://localhost:${port}`);
} catch (error) {
  console.error("npm start failed:", error instanceof Error ? error.message : error);
  await shutdown(1);
}
