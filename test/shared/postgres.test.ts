/**
 * The same SQL on a real PostgreSQL server (PG_TEST_URL, which CI sets): the oracle's journal, the
 * bank bridge's store with an export validated against the ISO schema, and the indexer following a
 * chain through a reorganisation. Each run works in a schema of its own, dropped at the end.
 */
import { expect } from "chai";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createPublicClient, http, type Address, type Hex, type PublicClient } from "viem";
import { BankBridge } from "../../services/bank/bridge.ts";
import { validateXsd } from "../../services/bank/xsd.ts";
import { Indexer } from "../../services/indexer/indexer.ts";
import { Journal } from "../../services/oracle/journal.ts";
import { payPerUseAbi } from "../../services/shared/artifacts.ts";
import { openDatabase, type Database } from "../../services/shared/db.ts";
import { signReading } from "../../services/shared/signatures.ts";
import { CREDITOR, mandateInput } from "../bank/fixtures.ts";
import { startHarness, type Harness } from "../oracle/harness.ts";

const url = process.env.PG_TEST_URL;

describe("the SQL on PostgreSQL", function () {
  let admin: Database;
  let db: Database;
  const schema = `t_${randomBytes(6).toString("hex")}`;

  before(async function () {
    if (!url) {
      console.log("    PG_TEST_URL is not set: skipping the tests against PostgreSQL");
      this.skip();
    }
    admin = await openDatabase({ url });
    await admin.query(`CREATE SCHEMA ${schema}`);
    const scoped = new URL(url);
    scoped.searchParams.set("options", `-c search_path=${schema}`);
    db = await openDatabase({ url: scoped.toString() });
    expect(db.kind).to.equal("postgres");
  });

  after(async () => {
    await db?.close();
    if (admin) {
      await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      await admin.close();
    }
  });

  it("journals readings and takes the numerically newest per agreement", async () => {
    const journal = await Journal.open(db);
    const machineId = `0x${"cd".repeat(32)}` as Hex;
    for (const units of [9n, 10n, 8n]) {
      await journal.append({
        agreementId: 7n,
        machineId,
        cumulativeUnits: units,
        timestamp: 1n,
        signature: "0x",
        attested: true,
      });
    }
    expect((await journal.newest(7n))?.cumulativeUnits).to.equal(10n);
    expect((await journal.pending(10)).map((row) => row.cumulativeUnits)).to.deep.equal([10n]);
  });

  it("keeps mandates and writes a schema-valid pain.008 from the store", async () => {
    const bridge = await BankBridge.open({
      db,
      contract: "0x5fbdb2315678afecb367f032d93f642f64180aa3" as Address,
      creditor: CREDITOR,
      eurTokens: ["0x00000000000000000000000000000000000e0c00" as Address],
      outDir: mkdtempSync(join(tmpdir(), "ppu-pg-bank-")),
    });
    const mandates = await bridge.addMandates([
      mandateInput(1),
      mandateInput(2, { kind: "oneoff" }),
    ]);
    await bridge.recordRequests(
      mandates.map((mandate, i) => ({
        debitId: BigInt(i + 1),
        agreementId: BigInt(i + 10),
        mandateRef: mandate.mandateRef,
        token: "0x00000000000000000000000000000000000e0c00" as Address,
        tokenDecimals: 6,
        amount: 1_234_567n * BigInt(i + 1),
        dueDate: BigInt(Math.floor(Date.now() / 1000) + 86_400),
      })),
    );
    const report = await bridge.exportBatch();
    expect(report.debits).to.equal(2);
    expect(report.batches.map((b) => b.sequenceType).sort()).to.deep.equal(["FRST", "OOFF"]);
    expect((await validateXsd(readFileSync(report.file!, "utf8"))).valid).to.equal(true);
    expect((await bridge.debits({ state: "exported" })).map((d) => d.debit_id)).to.deep.equal([
      "1",
      "2",
    ]);
  });

  describe("the indexer", function () {
    let h: Harness;
    before(async () => {
      h = await startHarness();
    });
    after(async () => {
      await h?.stop();
    });

    it("follows a chain and rebuilds after a reorganisation", async () => {
      const client = createPublicClient({ transport: http(h.chain.rpcUrl) }) as PublicClient;
      const indexer = await Indexer.open({ db, client, address: h.payPerUse, abi: payPerUseAbi() });
      const record = async (units: bigint) => {
        const reading = {
          agreementId: h.k1.agreementId,
          machineId: h.k1.machineId,
          cumulativeUnits: units,
          timestamp: BigInt(Math.floor(Date.now() / 1000) + h.clockOffset),
        };
        await h.write("record", [
          [{ reading, signature: signReading(h.domain, reading, h.k1.key!) }],
        ]);
      };
      await record(1_000n);
      await indexer.syncOnce();
      const snapshot = (await h.chain.provider.request({ method: "evm_snapshot" })) as Hex;
      await record(5_000n);
      await indexer.syncOnce();
      await h.chain.provider.request({ method: "evm_revert", params: [snapshot] });
      await record(2_000n);
      await h.chain.provider.request({ method: "evm_mine" });
      await indexer.syncOnce();
      const { rows } = await db.query<{ units: string }>(
        "SELECT cumulative_units::text AS units FROM idx_agreements WHERE agreement_id = $1",
        [String(h.k1.agreementId)],
      );
      expect(rows[0]!.units).to.equal("2000");
      const usage = await db.query<{ units: string }>(
        "SELECT u.cumulative_units::text AS units FROM idx_usage u WHERE u.agreement_id = $1 ORDER BY u.block_number",
        [String(h.k1.agreementId)],
      );
      expect(usage.rows.map((r) => r.units)).to.deep.equal(["1000", "2000"]);
    });
  });
});
