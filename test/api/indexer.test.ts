/**
 * The indexer against a real chain: machines, agreements, usage, payouts and direct debits land in
 * their tables; a restart resumes at the cursor without double counting; a reorganisation (blocks
 * dropped with evm_revert and replaced by others) is detected by hash and the tables are rebuilt to
 * match the chain.
 */
import { expect } from "chai";
import { createPublicClient, http, type Hex, type PublicClient } from "viem";
import { Indexer } from "../../services/indexer/indexer.ts";
import { payPerUseAbi } from "../../services/shared/artifacts.ts";
import { openDatabase, type Database } from "../../services/shared/db.ts";
import { signReading } from "../../services/shared/signatures.ts";
import { startHarness, type Harness, type TestMachine } from "../oracle/harness.ts";

describe("indexer", function () {
  let h: Harness;
  let db: Database;
  let client: PublicClient;

  const open = () =>
    Indexer.open({ db, client, address: h.payPerUse, abi: payPerUseAbi(), blockRange: 7n });

  async function record(m: TestMachine, units: bigint) {
    const reading = {
      agreementId: m.agreementId,
      machineId: m.machineId,
      cumulativeUnits: units,
      timestamp: BigInt(Math.floor(Date.now() / 1000) + h.clockOffset),
    };
    await h.write("record", [[{ reading, signature: signReading(h.domain, reading, m.key!) }]]);
  }

  async function agreement(id: bigint) {
    const { rows } = await db.query<{
      cumulative_units: string;
      total_charged: string;
      escrow: string;
    }>(
      "SELECT cumulative_units::text, total_charged::text, escrow::text FROM idx_agreements WHERE agreement_id = $1",
      [String(id)],
    );
    return rows[0];
  }

  async function onChain(id: bigint) {
    return (await h.client.readContract({
      address: h.payPerUse,
      abi: h.abi,
      functionName: "getAgreement",
      args: [id],
    })) as { cumulativeUnits: bigint; totalCharged: bigint; escrow: bigint };
  }

  before(async () => {
    h = await startHarness();
    client = createPublicClient({ transport: http(h.chain.rpcUrl) }) as PublicClient;
    db = await openDatabase();
  });

  after(async () => {
    await db?.close();
    await h?.stop();
  });

  it("indexes machines, tariffs, agreements and usage in small block ranges", async () => {
    await record(h.k1, 1_000n);
    await record(h.p256, 2_000n);
    const indexer = await open();
    expect(await indexer.syncOnce()).to.be.greaterThan(10);
    const machines = await db.query("SELECT * FROM idx_machines");
    expect(machines.rows).to.have.length(4);
    const tariffs = await db.query("SELECT * FROM idx_tariffs");
    expect(tariffs.rows).to.have.length(4);
    for (const m of [h.k1, h.p256]) {
      const chain = await onChain(m.agreementId);
      expect(await agreement(m.agreementId)).to.deep.equal({
        cumulative_units: String(chain.cumulativeUnits),
        total_charged: String(chain.totalCharged),
        escrow: String(chain.escrow),
      });
    }
  });

  it("resumes where it stopped after a restart, counting nothing twice", async () => {
    await record(h.k1, 1_500n);
    await h.write("settle", [[h.k1.agreementId]]);
    const again = await open();
    const stored = await again.syncOnce();
    expect(stored).to.be.greaterThan(0);
    expect(await again.syncOnce()).to.equal(0);
    const chain = await onChain(h.k1.agreementId);
    expect((await agreement(h.k1.agreementId))!.total_charged).to.equal(String(chain.totalCharged));
    const usage = await db.query("SELECT * FROM idx_usage WHERE agreement_id = $1", [
      String(h.k1.agreementId),
    ]);
    expect(usage.rows).to.have.length(2);
    const payouts = await db.query<{ amount: string }>("SELECT amount::text FROM idx_payouts");
    expect(payouts.rows).to.have.length(1);
  });

  it("rebuilds after a reorganisation so that the tables match the new chain", async () => {
    const indexer = await open();
    await indexer.syncOnce();
    const snapshot = (await h.chain.provider.request({ method: "evm_snapshot" })) as Hex;
    await record(h.k1, 9_000n);
    await record(h.p256, 9_000n);
    await indexer.syncOnce();
    expect((await agreement(h.k1.agreementId))!.cumulative_units).to.equal("9000");

    // The blocks with those readings are dropped; other blocks take their heights.
    await h.chain.provider.request({ method: "evm_revert", params: [snapshot] });
    await record(h.k1, 2_500n);
    await h.chain.provider.request({ method: "evm_mine" });
    await h.chain.provider.request({ method: "evm_mine" });
    let reorgAt: bigint | undefined;
    indexer.once("reorg", (ancestor: bigint) => (reorgAt = ancestor));
    await indexer.syncOnce();
    expect(reorgAt !== undefined, "the reorganisation was detected").to.equal(true);

    for (const m of [h.k1, h.p256]) {
      const chain = await onChain(m.agreementId);
      expect(await agreement(m.agreementId), `agreement ${m.agreementId}`).to.deep.equal({
        cumulative_units: String(chain.cumulativeUnits),
        total_charged: String(chain.totalCharged),
        escrow: String(chain.escrow),
      });
    }
    expect((await agreement(h.k1.agreementId))!.cumulative_units).to.equal("2500");
    const usage = await db.query<{ cumulative_units: string }>(
      "SELECT cumulative_units::text FROM idx_usage WHERE agreement_id = $1 ORDER BY block_number",
      [String(h.k1.agreementId)],
    );
    expect(usage.rows.map((r) => r.cumulative_units)).to.deep.equal(["1000", "1500", "2500"]);
  });
});
