/**
 * A settled reading whose block leaves the chain: the chain is reverted to a snapshot taken before the
 * submission (the block and its transaction are gone, as in a reorganisation). The oracle notices
 * within REORG_WINDOW_BLOCKS, puts the reading back to pending and submits it again; in the end the
 * chain charges it exactly once and the journal holds it as settled by the transaction now in the chain.
 */
import { expect } from "chai";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { createOracle, type Oracle } from "../../services/oracle/service.ts";
import { openDatabase } from "../../services/shared/db.ts";
import {
  MachineSide,
  readingMessage,
  startHarness,
  testOracleConfig,
  type Harness,
} from "./harness.ts";

describe("oracle after a reorganisation", function () {
  let h: Harness;
  let oracle: Oracle | undefined;
  let side: MachineSide | undefined;
  const dataDir = mkdtempSync(join(tmpdir(), "ppu-oracle-reorg-"));

  const rpc = (method: string, params?: unknown[]) => h.rpc(method, params);

  before(async () => {
    h = await startHarness();
    oracle = createOracle(
      testOracleConfig(h, {
        DATA_DIR: dataDir,
        CHAIN_POLL_MS: "100",
        REORG_WINDOW_BLOCKS: "16",
      }),
    );
    await oracle.start();
    side = await MachineSide.connect(oracle.brokerUrl, [h.k1, h.p256], 4);
  });

  after(async () => {
    await side?.close();
    await oracle?.stop();
    await h?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  const settledAt =
    (machineId: Hex, units: string) =>
    (s: { machineId: string; state: string; cumulativeUnits?: string }) =>
      s.machineId === machineId && s.state === "settled" && s.cumulativeUnits === units;

  it("submits a reading again when its transaction left the chain, and it is charged once", async () => {
    const m = h.k1;
    const oracleAddress = privateKeyToAccount(h.oracleKey).address;
    const nonceBefore = await h.client.getTransactionCount({ address: oracleAddress });
    const snapshot = await rpc("evm_snapshot");

    await side!.publish(m, readingMessage(h, m, 4_000n));
    const first = await side!.waitFor(settledAt(m.machineId, "4000"), "settled 4000");
    const firstReceipt = await h.client.getTransactionReceipt({ hash: first.txHash as Hex });
    expect((await h.agreement(m.agreementId)).cumulativeUnits).to.equal(4_000n);

    // Drop the block: the chain no longer has the transaction or the charge.
    expect(await rpc("evm_revert", [snapshot])).to.equal(true);
    expect((await h.agreement(m.agreementId)).cumulativeUnits).to.equal(0n);
    expect(await h.client.getBlockNumber()).to.be.lessThan(firstReceipt.blockNumber);
    expect(await rpc("eth_getTransactionReceipt", [first.txHash])).to.equal(null);

    const settledBefore = side!.statuses.filter(settledAt(m.machineId, "4000")).length;
    const deadline = Date.now() + 20_000;
    while (side!.statuses.filter(settledAt(m.machineId, "4000")).length === settledBefore) {
      if (Date.now() > deadline) throw new Error("the reading was not submitted again");
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const again = side!.statuses.filter(settledAt(m.machineId, "4000")).at(-1)!;
    const receipt = await h.client.getTransactionReceipt({ hash: again.txHash as Hex });
    expect(receipt.status).to.equal("success");
    // Submitted with the nonce the chain expects again, not after the forgotten one.
    const tx = await h.client.getTransaction({ hash: again.txHash as Hex });
    expect(tx.nonce).to.equal(nonceBefore);

    // Another reading keeps flowing, and nothing more is submitted for the first.
    await side!.publish(h.p256, readingMessage(h, h.p256, 1_000n));
    await side!.waitFor(settledAt(h.p256.machineId, "1000"), "settled 1000");
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect(side!.statuses.filter(settledAt(m.machineId, "4000")).length).to.equal(
      settledBefore + 1,
    );
    expect(await h.client.getTransactionCount({ address: oracleAddress })).to.equal(
      nonceBefore + 2,
    );

    const agreement = await h.agreement(m.agreementId);
    expect(agreement.cumulativeUnits).to.equal(4_000n);
    expect(agreement.totalCharged, "charged once").to.equal(1_000_000n);
    const charges = await h.charges(m.agreementId);
    expect(charges).to.deep.equal([again.txHash]);

    const metrics = await (await fetch(`http://127.0.0.1:${oracle!.healthPort}/metrics`)).text();
    expect(metrics).to.match(/^ppu_oracle_readings_reorged_total 1$/m);

    await side!.close();
    side = undefined;
    await oracle!.stop();
    oracle = undefined;
    const db = await openDatabase({ dataDir });
    try {
      const { rows } = await db.query<{ state: string; tx_hash: string; settled_block: string }>(
        "SELECT state, tx_hash, settled_block::text FROM oracle_readings WHERE agreement_id = $1",
        [m.agreementId.toString()],
      );
      expect(rows).to.deep.equal([
        { state: "settled", tx_hash: again.txHash, settled_block: receipt.blockNumber.toString() },
      ]);
    } finally {
      await db.close();
    }
  });
});
