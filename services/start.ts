/**
 * `npm start`: the whole system on one machine with nothing installed but Node.js.
 *
 * An in-process Hardhat chain served as JSON-RPC on localhost, the contracts deployed to it, the
 * oracle with its embedded MQTT broker and journal, a simulated fleet with both key types, and the
 * live dashboard. Ctrl-C stops everything in reverse order; a second Ctrl-C exits at once.
 *
 * Settings: PORT (dashboard, default 8080), RPC_PORT (JSON-RPC, default 8545), MACHINES (default 6),
 * LOG_LEVEL (oracle logs, default warn).
 */
import { createPublicClient, http } from "viem";
import { buildDashboard } from "./api/dashboard.ts";
import { LiveView } from "./api/live-view.ts";
import { createOracle } from "./oracle/service.ts";
import { loadOracleConfig } from "./oracle/config.ts";
import { deploySuite, startDevChain } from "./shared/devchain.ts";
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
  const chain = await startDevChain({ port: rpcPort });
  stops.push({ name: "chain", stop: () => chain.stop() });
  step(`chain ${chain.chainId} serving JSON-RPC at ${chain.rpcUrl}`);

  const [deployer, bank, owner, lessee, oracleSigner] = chain.accounts;
  const deployment = await deploySuite({
    rpcUrl: chain.rpcUrl,
    deployerKey: deployer!.privateKey,
    bank: bank!.address,
    oracleSigners: [oracleSigner!.address],
    threshold: 1,
    onProgress: step,
  });

  const oracle = createOracle(
    loadOracleConfig({
      RPC_URL: chain.rpcUrl,
      CONTRACT_ADDRESS: deployment.payPerUse,
      ORACLE_PRIVATE_KEY: oracleSigner!.privateKey,
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
    tokenOwnerKey: deployer!.privateKey,
    ownerKey: owner!.privateKey,
    lesseeKey: lessee!.privateKey,
    machines: Number(process.env.MACHINES ?? 6),
    onProgress: step,
  });
  stops.push({ name: "fleet", stop: () => fleet.stop() });

  const client = createPublicClient({ transport: http(chain.rpcUrl) });
  let block = 0n;
  const blockTimer = setInterval(() => {
    client.getBlockNumber().then(
      (n) => (block = n),
      () => {},
    );
  }, 1000);
  stops.push({ name: "block watcher", stop: async () => clearInterval(blockTimer) });

  const app = buildDashboard({
    view,
    names: new Map(fleet.machines.map((m) => [m.machineId, `${m.name} (${m.keyType})`])),
    health: () => ({ ...oracle.stats, block: block.toString() }),
  });
  await app.listen({ port, host: "127.0.0.1" });
  stops.push({ name: "dashboard", stop: () => app.close() });

  console.log(
    `\nPayPerUse ${deployment.payPerUse}, token ${deployment.token}, ${fleet.machines.length} machines metering.`,
  );
  console.log(`Dashboard: http://localhost:${port}`);
} catch (error) {
  console.error("npm start failed:", error instanceof Error ? error.message : error);
  await shutdown(1);
}
