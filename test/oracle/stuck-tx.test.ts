/**
 * A submission that is not mined: the chain stops mining (automine off), the oracle's transaction
 * waits in the pending pool, and after STUCK_TX_MS the oracle sends it again with the same nonce and
 * both fees raised by at least 12.5 % — until the next raise would pass MAX_FEE_GWEI. Once a block is
 * mined, the version in it counts: the reading is charged exactly once and the journal holds it as
 * settled by that version.
 */
import { expect } from "chai";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { createOracle, type Oracle } from "../../services/oracle/service.ts";
import { raisedFee } from "../../services/oracle/submitter.ts";
import {
  journalRows,
  MachineSide,
  readingMessage,
  startHarness,
  testOracleConfig,
  type Harness,
} from "./harness.ts";

interface PendingTx {
  hash: Hex;
  from: Hex;
  to: Hex;
  nonce: number;
  input: Hex;
  maxFeePerGas: bigint;
  maxPriorityFeePerGas: bigint;
}

const STUCK_TX_MS = 1_000;

describe("oracle with a transaction that is not mined", function () {
  let h: Harness;
  let oracle: Oracle | undefined;
  let side: MachineSide | undefined;
  const dataDir = mkdtempSync(join(tmpdir(), "ppu-oracle-stuck-"));

  const rpc = (method: string, params?: unknown[]) => h.rpc(method, params);

  /** The oracle's transactions in the block the node would mine next. */
  async function pendingFromOracle(): Promise<PendingTx[]> {
    const block = (await rpc("eth_getBlockByNumber", ["pending", true])) as {
      transactions: Record<string, string>[];
    };
    const oracleAddress = privateKeyToAccount(h.oracleKey).address.toLowerCase();
    return block.transactions
      .filter((tx) => tx.from!.toLowerCase() === oracleAddress)
      .map((tx) => ({
        hash: tx.hash as Hex,
        from: tx.from as Hex,
        to: tx.to as Hex,
        nonce: Number(tx.nonce),
        input: tx.input as Hex,
        maxFeePerGas: BigInt(tx.maxFeePerGas!),
        maxPriorityFeePerGas: BigInt(tx.maxPriorityFeePerGas!),
      }));
  }

  async function waitForPending(
    what: string,
    predicate: (tx: PendingTx) => boolean,
  ): Promise<PendingTx> {
    const deadline = Date.now() + 15_000;
    for (;;) {
      const found = (await pendingFromOracle()).find(predicate);
      if (found) return found;
      if (Date.now() > deadline) throw new Error(`no pending transaction ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

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

  it("replaces it with the same nonce and higher fees up to the ceiling; the mined version counts once", async () => {
    await rpc("evm_setAutomine", [false]);
    // No block is mined from here on, so the oracle's fee estimate is this one. The ceiling allows
    // two raises of 12.5 % (1.125² ≈ 1.27) but not a third (1.125³ ≈ 1.42).
    const estimate = await h.client.estimateFeesPerGas();
    const ceilingWei = (estimate.maxFeePerGas * 134n) / 100n;
    oracle = createOracle(
      testOracleConfig(h, {
        DATA_DIR: dataDir,
        CHAIN_POLL_MS: "100",
        STUCK_TX_MS: String(STUCK_TX_MS),
        MAX_FEE_GWEI: (Number(ceilingWei) / 1e9).toFixed(9),
      }),
    );
    await oracle.start();
    side = await MachineSide.connect(oracle.brokerUrl, [h.k1], 4);
    const m = h.k1;
    await side.publish(m, readingMessage(h, m, 4_000n));
    await side.waitFor((s) => s.state === "accepted" && s.cumulativeUnits === "4000", "accepted");

    const first = await waitForPending("from the oracle", () => true);
    expect(first.to.toLowerCase()).to.equal(h.payPerUse.toLowerCase());
    expect(first.maxFeePerGas).to.equal(estimate.maxFeePerGas);
    const versions = [first];
    for (let i = 1; i <= 2; i++) {
      const previous = versions[i - 1]!;
      const next = await waitForPending(
        `replacing ${previous.hash}`,
        (tx) => tx.hash !== previous.hash,
      );
      expect(next.nonce, "same nonce").to.equal(first.nonce);
      expect(next.input, "same call").to.equal(first.input);
      expect(next.maxFeePerGas * 1000n).to.be.at.least(previous.maxFeePerGas * 1125n);
      expect(next.maxPriorityFeePerGas * 1000n).to.be.at.least(
        previous.maxPriorityFeePerGas * 1125n,
      );
      expect(next.maxFeePerGas).to.be.at.most(ceilingWei);
      // The node keeps one version per nonce: the replaced one is gone from the pool.
      expect(await rpc("eth_getTransactionByHash", [previous.hash])).to.equal(null);
      versions.push(next);
    }
    const last = versions[2]!;
    expect(raisedFee(last.maxFeePerGas)).to.be.greaterThan(ceilingWei);

    // At the ceiling it waits for the last version instead of raising further.
    await new Promise((resolve) => setTimeout(resolve, 3 * STUCK_TX_MS));
    expect((await pendingFromOracle()).map((tx) => tx.hash)).to.deep.equal([last.hash]);
    const metrics = await (await fetch(`http://127.0.0.1:${oracle.healthPort}/metrics`)).text();
    expect(metrics).to.match(/^ppu_oracle_tx_replacements_total 2$/m);
    expect((await h.agreement(m.agreementId)).cumulativeUnits).to.equal(0n);

    await rpc("evm_mine");
    const settled = await side.waitFor(
      (s) => s.state === "settled" && s.cumulativeUnits === "4000",
      "settled 4000",
    );
    expect(settled.txHash).to.equal(last.hash);
    const receipt = await h.client.getTransactionReceipt({ hash: last.hash });
    expect(receipt.status).to.equal("success");
    await rpc("evm_setAutomine", [true]);

    const agreement = await h.agreement(m.agreementId);
    expect(agreement.cumulativeUnits).to.equal(4_000n);
    expect(agreement.totalCharged, "charged once").to.equal(1_000_000n);
    expect(await h.charges(m.agreementId)).to.deep.equal([last.hash]);

    await side.close();
    side = undefined;
    await oracle.stop();
    oracle = undefined;
    expect(await journalRows(dataDir, m.agreementId)).to.deep.equal([
      { state: "settled", tx_hash: last.hash },
    ]);
  });
});
