/**
 * Anyone may relay a device-signed reading. When someone else's transaction with the same reading is
 * mined just before the oracle's, the contract skips the oracle's copy as stale; the oracle reads the
 * chain's meter, sees the reading covered, and reports it settled (by no transaction of its own) —
 * charged once, journaled as settled, not as refused.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "chai";
import { createWalletClient, http, parseEventLogs, type Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { createOracle, type Oracle } from "../../services/oracle/service.ts";
import { chainFor } from "../../services/shared/deployment.ts";
import {
  journalRows,
  MachineSide,
  readingMessage,
  startHarness,
  testOracleConfig,
  type Harness,
} from "./harness.ts";

describe("oracle when someone else relays the reading first", () => {
  let h: Harness;
  let oracle: Oracle | undefined;
  let side: MachineSide | undefined;
  const dataDir = mkdtempSync(join(tmpdir(), "ppu-oracle-relayed-"));
  const rpc = (method: string, params?: unknown[]) => h.rpc(method, params);

  before(async () => {
    h = await startHarness();
  });

  after(async () => {
    await rpc("evm_setAutomine", [true]).catch(() => {});
    await side?.close();
    await oracle?.stop();
    await h?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("reports the reading settled, charged once, when the oracle's copy is skipped as stale", async () => {
    await rpc("evm_setAutomine", [false]);
    oracle = createOracle(testOracleConfig(h, { DATA_DIR: dataDir, STUCK_TX_MS: "600000" }));
    await oracle.start();
    side = await MachineSide.connect(oracle.brokerUrl, [h.k1], 4);
    const m = h.k1;
    const message = readingMessage(h, m, 4_000n);
    await side.publish(m, message);
    await side.waitFor((s) => s.state === "accepted" && s.cumulativeUnits === "4000", "accepted");

    // The oracle's transaction waits in the pool.
    const oracleAddress = privateKeyToAccount(h.oracleKey).address.toLowerCase();
    let oracleTx: { hash: Hex; maxFeePerGas: string; maxPriorityFeePerGas: string } | undefined;
    for (let i = 0; i < 300 && oracleTx === undefined; i++) {
      const block = (await rpc("eth_getBlockByNumber", ["pending", true])) as {
        transactions: {
          hash: Hex;
          from: string;
          maxFeePerGas: string;
          maxPriorityFeePerGas: string;
        }[];
      };
      oracleTx = block.transactions.find((tx) => tx.from.toLowerCase() === oracleAddress);
      if (oracleTx === undefined) await new Promise((resolve) => setTimeout(resolve, 50));
    }
    if (oracleTx === undefined) throw new Error("the oracle sent no transaction");

    // The lessee's own relay of the same signed reading, paying more so that it is mined first.
    const relayer = createWalletClient({
      account: h.owner,
      chain: await chainFor(h.chain.rpcUrl),
      transport: http(h.chain.rpcUrl),
    });
    const relayHash = await relayer.writeContract({
      address: h.payPerUse,
      abi: h.abi,
      functionName: "record",
      args: [
        [
          {
            reading: {
              agreementId: m.agreementId,
              machineId: m.machineId,
              cumulativeUnits: 4_000n,
              timestamp: BigInt(message.timestamp),
            },
            signature: message.signature,
          },
        ],
      ],
      maxFeePerGas: BigInt(oracleTx.maxFeePerGas) * 2n,
      maxPriorityFeePerGas: BigInt(oracleTx.maxPriorityFeePerGas) * 2n,
      gas: 500_000n,
    } as never);
    await rpc("evm_mine");

    const settled = await side.waitFor(
      (s) => s.state === "settled" && s.cumulativeUnits === "4000",
      "settled 4000",
    );
    expect(settled.txHash, "settled by the relay, not by an oracle transaction").to.equal(
      undefined,
    );
    expect(side.statuses.some((s) => s.state === "rejected")).to.equal(false);
    await rpc("evm_setAutomine", [true]);

    const relay = await h.client.getTransactionReceipt({ hash: relayHash });
    const own = await h.client.getTransactionReceipt({ hash: oracleTx.hash });
    expect(relay.blockNumber).to.equal(own.blockNumber);
    expect(relay.transactionIndex).to.be.lessThan(own.transactionIndex);
    expect(await h.charges(m.agreementId), "charged by the relay alone").to.deep.equal([relayHash]);
    expect(
      parseEventLogs({ abi: h.abi, eventName: "ReadingSkipped", logs: own.logs }),
    ).to.have.length(1);
    const agreement = await h.agreement(m.agreementId);
    expect(agreement.cumulativeUnits).to.equal(4_000n);
    expect(agreement.totalCharged, "charged once").to.equal(1_000_000n);

    await side.close();
    side = undefined;
    await oracle.stop();
    oracle = undefined;
    expect(await journalRows(dataDir, m.agreementId)).to.deep.equal([
      { state: "settled", tx_hash: null },
    ]);
  });
});
