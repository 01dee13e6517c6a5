/**
 * The whole SEPA cycle against a real JSON-RPC node: escrows run dry, settlement requests direct
 * debits, the bridge follows the events and writes a pain.008 that validates against the ISO schema,
 * the bank answers with camt.054 notifications (both namespaces) that collect some debits, return
 * one and later refund another, and the chain shows which debits settled and which agreements are
 * suspended. Bad statements change nothing.
 */
import { expect } from "chai";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Hex } from "viem";
import { BankBridge } from "../../services/bank/bridge.ts";
import { addDays } from "../../services/bank/calendar.ts";
import { connectBankChain } from "../../services/bank/chain.ts";
import { validateXsd } from "../../services/bank/xsd.ts";
import { openDatabase, type Database } from "../../services/shared/db.ts";
import { ConflictError, ValidationError } from "../../services/shared/errors.ts";
import { signReading, type DeviceSigningKey } from "../../services/shared/signatures.ts";
import { readPain008, writeCamt054, type InitiatedDebit } from "../../services/sim/bank.ts";
import { startHarness, type Harness, type TestMachine } from "../oracle/harness.ts";
import { CREDITOR, mandateInput, mint } from "./fixtures.ts";

const STATUS = { Requested: 1, Collected: 2, Returned: 3 } as const;
const AGREEMENT = { Active: 1, Suspended: 2 } as const;

function key(): DeviceSigningKey {
  return {
    keyType: "secp256k1",
    privateKey:
      `0x${Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("hex")}` as Hex,
  };
}

describe("bank bridge: the full direct-debit cycle on a chain", function () {
  let h: Harness;
  let db: Database;
  let bridge: BankBridge;
  let machines: TestMachine[];
  let lesseeKey: Hex;
  let bankKey: Hex;
  let debits: InitiatedDebit[];
  let painFile: string;
  let firstStatement: string;
  let mintToBank: (amount: bigint) => Promise<void>;
  const outDir = mkdtempSync(join(tmpdir(), "ppu-bank-"));

  async function debit(id: bigint) {
    return (await h.client.readContract({
      address: h.payPerUse,
      abi: h.abi,
      functionName: "getDirectDebit",
      args: [id],
    })) as { status: number; amount: bigint; agreementId: bigint; returnReason: Hex };
  }

  async function agreementStatus(id: bigint) {
    return (await h.agreement(id)).status;
  }

  async function camt(
    version: "camt.054.001.08" | "camt.054.001.02",
    messageId: string,
    entries: Parameters<typeof writeCamt054>[0]["entries"],
  ) {
    return writeCamt054({
      version,
      messageId,
      createdAt: new Date(),
      accountIban: CREDITOR.iban,
      entries,
    });
  }

  before(async function () {
    h = await startHarness([key(), key(), key()]);
    machines = h.machines;
    lesseeKey = h.chain.accounts[3]!.privateKey;
    bankKey = h.chain.accounts[1]!.privateKey;

    // The bank holds the tokenised euros it delivers when a collection is booked.
    mintToBank = (amount: bigint) => mint(h, h.chain.accounts[1]!.address, amount);
    // Enough for the first collection (250 EURC) but not for the second: the first import stops halfway.
    await mintToBank(300_000_000n);

    db = await openDatabase();
    bridge = await BankBridge.open({
      db,
      chain: await connectBankChain({ rpcUrl: h.chain.rpcUrl, contract: h.payPerUse, bankKey }),
      creditor: CREDITOR,
      eurTokens: [h.token],
      outDir,
    });
  });

  after(async () => {
    await db?.close();
    await h?.stop();
  });

  it("requests a direct debit for each agreement whose escrow ran dry, with the mandate's reference", async function () {
    // Mandates: one structured German address, one hybrid, one Swiss debtor (outside the EEA: BIC required).
    const mandates = [
      await bridge.addMandate(mandateInput(0)),
      await bridge.addMandate(mandateInput(1)),
      await bridge.addMandate(
        mandateInput(2, {
          iban: "CH9300762011623852957",
          bic: "UBSWCHZH80A",
          address: {
            street: "Bahnhofstrasse",
            buildingNumber: "45",
            postCode: "8001",
            town: "Zürich",
            country: "CH",
          },
        }),
      ),
    ];
    const now = BigInt(Math.floor(Date.now() / 1000) + h.clockOffset);
    for (const [index, machine] of machines.entries()) {
      await h.write("setMandate", [machine.agreementId, mandates[index]!.mandateRef], lesseeKey);
      // 5,000,000 units at 0.25 EUR per 1,000 cost 1,250 EUR against a 1,000 EUR escrow: 250 EUR of debt.
      const reading = {
        agreementId: machine.agreementId,
        machineId: machine.machineId,
        cumulativeUnits: 5_000_000n + BigInt(index) * 4_000n,
        timestamp: now,
      };
      await h.write("record", [
        [{ reading, signature: signReading(h.domain, reading, machine.key!) }],
      ]);
    }
    await h.write("settle", [machines.map((m) => m.agreementId)]);

    const synced = await bridge.sync();
    expect(synced.requested).to.equal(3);
    for (const [index] of machines.entries()) {
      const d = await debit(BigInt(index + 1));
      expect(d.status).to.equal(STATUS.Requested);
      expect(d.amount).to.equal(250_000_000n + BigInt(index) * 1_000_000n);
    }
    expect(await bridge.sync()).to.include({ requested: 0 });
  });

  it("writes a pain.008 for the open requests that validates against the ISO schema", async function () {
    const report = await bridge.exportBatch();
    expect(report.debits).to.equal(3);
    expect(report.controlSum).to.equal("753.00");
    expect(report.skipped).to.deep.equal([]);
    expect(report.batches.map((b) => b.sequenceType)).to.deep.equal(["FRST"]);
    painFile = report.file!;
    const xml = readFileSync(painFile, "utf8");
    const schema = await validateXsd(xml);
    expect(schema.errors).to.deep.equal([]);
    expect(schema.valid).to.equal(true);
    expect(xml).to.include("<Nm>Joerg Mueller</Nm>");
    expect(xml).to.include("<BICFI>UBSWCHZH80A</BICFI>");
    expect(xml).to.include("<AdrLine>Marienplatz 8</AdrLine>");
    expect(xml).not.to.match(/[^\x20-\x7e\n]/u);
    debits = readPain008(xml);
    expect(debits.map((d) => d.cents)).to.deep.equal([25_000n, 25_100n, 25_200n]);

    // Nothing is exported twice.
    const again = await bridge.exportBatch();
    expect(again.debits).to.equal(0);
    expect(again.file).to.equal(undefined);
  });

  it("refuses a statement with an entry that matches no request, and changes nothing", async function () {
    const xml = await camt("camt.054.001.08", "BANK-BAD-1", [
      {
        endToEndId: debits[0]!.endToEndId,
        mandateId: debits[0]!.mandateId,
        cents: debits[0]!.cents,
        direction: "CRDT",
        bookingDate: debits[0]!.collectionDate,
      },
      {
        endToEndId: "PPU-FFFFFFFF-999",
        cents: 100n,
        direction: "CRDT",
        bookingDate: debits[0]!.collectionDate,
      },
    ]);
    try {
      await bridge.importStatement(xml, "bad.xml");
      expect.fail("the import should have been refused");
    } catch (error) {
      expect(error).to.be.instanceOf(ValidationError);
      expect((error as Error).message).to.match(
        /PPU-FFFFFFFF-999\): matches no direct-debit request/,
      );
      expect((error as Error).message).to.match(/nothing changed/);
    }
    expect((await debit(1n)).status).to.equal(STATUS.Requested);
    expect((await db.query("SELECT * FROM bank_imports")).rows).to.have.length(0);
  });

  it("refuses a file that is not camt.054, and changes nothing", async function () {
    const pain = readFileSync(painFile, "utf8");
    try {
      await bridge.importStatement(pain, "pain.xml");
      expect.fail("the import should have been refused");
    } catch (error) {
      expect(error).to.be.instanceOf(ValidationError);
      expect((error as Error).message).to.match(
        /pain\.xml is not a camt\.054 notification.*pain\.008\.001\.08.*payment initiation/,
      );
    }
    expect((await db.query("SELECT * FROM bank_imports")).rows).to.have.length(0);
  });

  it("refuses a statement whose entries disagree with the requests, naming each, and changes nothing", async function () {
    const [first, second, third] = debits;
    const xml = await camt("camt.054.001.08", "BANK-BAD-2", [
      {
        endToEndId: first!.endToEndId,
        mandateId: "PPU-M-9999",
        cents: first!.cents,
        direction: "CRDT",
        bookingDate: first!.collectionDate,
      },
      {
        endToEndId: second!.endToEndId,
        mandateId: second!.mandateId,
        cents: second!.cents - 1n,
        direction: "CRDT",
        bookingDate: second!.collectionDate,
      },
      {
        endToEndId: third!.endToEndId,
        mandateId: third!.mandateId,
        cents: third!.cents,
        direction: "DBIT",
        bookingDate: third!.collectionDate,
      },
      {
        endToEndId: first!.endToEndId,
        mandateId: first!.mandateId,
        cents: first!.cents,
        direction: "CRDT",
        bookingDate: first!.collectionDate,
        status: "PDNG",
      },
    ]);
    const error = await bridge.importStatement(xml, "bad-2.xml").then(
      () => expect.fail("the import should have been refused"),
      (e: Error) => e,
    );
    expect(error).to.be.instanceOf(ValidationError);
    expect(error.message).to.match(/3 problem\(s\); nothing changed/);
    expect(error.message).to.match(
      /mandate PPU-M-9999 does not match the request's mandate PPU-M-0000/,
    );
    expect(error.message).to.match(/collected 250\.99 EUR but the request was for 251\.00 EUR/);
    expect(error.message).to.match(/a return without an ISO 20022 reason code/);
    for (const id of [1n, 2n, 3n]) expect((await debit(id)).status).to.equal(STATUS.Requested);
    expect((await db.query("SELECT * FROM bank_imports")).rows).to.have.length(0);
  });

  it("confirms booked collections and reports a return, suspending that agreement", async function () {
    const [first, second, third] = debits;
    const xml = await camt("camt.054.001.08", "BANK-2026-0001", [
      {
        endToEndId: first!.endToEndId,
        mandateId: first!.mandateId,
        cents: first!.cents,
        direction: "CRDT",
        bookingDate: first!.collectionDate,
      },
      {
        endToEndId: second!.endToEndId,
        mandateId: second!.mandateId,
        cents: second!.cents,
        direction: "CRDT",
        bookingDate: second!.collectionDate,
      },
      {
        endToEndId: third!.endToEndId,
        mandateId: third!.mandateId,
        cents: third!.cents,
        direction: "DBIT",
        bookingDate: third!.collectionDate,
        reasonCode: "AM04",
      },
    ]);
    firstStatement = xml;
    // The bank's account cannot deliver the second collection's tokens: the import stops there.
    const halfway = await bridge.importStatement(xml, "camt-1.xml").then(
      () => undefined,
      (error: Error) => error,
    );
    expect(halfway?.message).to.match(/ERC20InsufficientBalance|insufficient/i);
    expect((await debit(1n)).status).to.equal(STATUS.Collected);
    expect((await debit(2n)).status).to.equal(STATUS.Requested);

    // With the tokens there, the same file resumes where it stopped; nothing is sent twice.
    await mintToBank(10n ** 12n);
    const report = await bridge.importStatement(xml, "camt-1.xml");
    expect(report.resumed).to.equal(true);
    const collectedEvents = await h.client.getContractEvents({
      address: h.payPerUse,
      abi: h.abi,
      eventName: "DirectDebitCollected",
      fromBlock: 0n,
    });
    expect(
      collectedEvents.map((e) => (e as unknown as { args: { debitId: bigint } }).args.debitId),
    ).to.deep.equal([1n, 2n]);
    expect(report.collected[0]!.tx).to.equal(collectedEvents[0]!.transactionHash);
    expect(report.collected[1]!.tx).to.match(/^0x[0-9a-f]{64}$/);
    expect(report.collected.map((c) => c.debitId)).to.deep.equal(["1", "2"]);
    expect(report.returned).to.have.length(1);
    expect(report.returned[0]).to.include({
      debitId: "3",
      reasonCode: "AM04",
      afterCollection: false,
    });

    expect((await debit(1n)).status).to.equal(STATUS.Collected);
    expect((await debit(2n)).status).to.equal(STATUS.Collected);
    const returned = await debit(3n);
    expect(returned.status).to.equal(STATUS.Returned);
    expect(Buffer.from(returned.returnReason.slice(2), "hex").toString()).to.equal("AM04");
    expect(await agreementStatus(machines[0]!.agreementId)).to.equal(AGREEMENT.Active);
    expect(await agreementStatus(machines[1]!.agreementId)).to.equal(AGREEMENT.Active);
    expect(await agreementStatus(machines[2]!.agreementId)).to.equal(AGREEMENT.Suspended);
    // The collected debts are paid: the agreements hold exactly what was charged.
    const a0 = (await h.client.readContract({
      address: h.payPerUse,
      abi: h.abi,
      functionName: "getAgreement",
      args: [machines[0]!.agreementId],
    })) as { debt: bigint };
    expect(a0.debt).to.equal(0n);
  });

  it("refuses the same statement twice and changes nothing", async function () {
    try {
      await bridge.importStatement(firstStatement, "camt-1-again.xml");
      expect.fail("the duplicate should have been refused");
    } catch (error) {
      expect(error).to.be.instanceOf(ConflictError);
      expect((error as Error).message).to.match(
        /already imported: message BANK-2026-0001 came in camt-1\.xml/,
      );
    }
    expect((await debit(1n)).status).to.equal(STATUS.Collected);
    expect((await db.query("SELECT message_id FROM bank_imports")).rows).to.have.length(1);
  });

  it("reports refunds after collection from a camt.054.001.02 notification: 8 weeks, or 13 months when unauthorised", async function () {
    const [first, second] = debits;
    const xml = await camt("camt.054.001.02", "BANK-2026-0002", [
      {
        endToEndId: first!.endToEndId,
        mandateId: first!.mandateId,
        cents: first!.cents,
        direction: "DBIT",
        bookingDate: addDays(first!.collectionDate, 55),
        reasonCode: "MD06",
      },
      {
        endToEndId: second!.endToEndId,
        mandateId: second!.mandateId,
        cents: second!.cents,
        direction: "DBIT",
        bookingDate: addDays(second!.collectionDate, 390),
        reasonCode: "MD01",
      },
    ]);
    const report = await bridge.importStatement(xml, "camt-2.xml");
    expect(report.returned.map((r) => [r.debitId, r.reasonCode, r.afterCollection])).to.deep.equal([
      ["1", "MD06", true],
      ["2", "MD01", true],
    ]);
    expect(report.warnings).to.deep.equal([]);
    expect((await debit(1n)).status).to.equal(STATUS.Returned);
    expect((await debit(2n)).status).to.equal(STATUS.Returned);
    expect(await agreementStatus(machines[0]!.agreementId)).to.equal(AGREEMENT.Suspended);
    expect(await agreementStatus(machines[1]!.agreementId)).to.equal(AGREEMENT.Suspended);
    // The refunded money is owed again: the debt re-opens.
    const a1 = (await h.client.readContract({
      address: h.payPerUse,
      abi: h.abi,
      functionName: "getAgreement",
      args: [machines[1]!.agreementId],
    })) as { debt: bigint };
    expect(a1.debt).to.equal(251_000_000n);
  });
});
