/**
 * The bridge's store without a chain: mandates stored all or nothing, what an export leaves out and
 * why, sequence types, lapsed and one-off mandates, an export interrupted between planning and
 * writing, and camt.054 files of both versions read into transactions.
 */
import { expect } from "chai";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Address, Hex } from "viem";
import { BankBridge } from "../../services/bank/bridge.ts";
import { parseCamt054 } from "../../services/bank/camt054.ts";
import { openDatabase, type Database } from "../../services/shared/db.ts";
import { ConflictError, ValidationError } from "../../services/shared/errors.ts";
import { writeCamt054 } from "../../services/sim/bank.ts";
import { CREDITOR, mandateInput } from "./fixtures.ts";

const EURC = "0x00000000000000000000000000000000000e0c00" as Address;
const USDC = "0x0000000000000000000000000000000000005dc0" as Address;
const CONTRACT = "0x5fbdb2315678afecb367f032d93f642f64180aa3" as Address;
const NOW = new Date("2026-11-25T10:00:00Z");
const DUE = BigInt(Math.floor(NOW.getTime() / 1000) + 2 * 86_400);

async function rejects(
  work: Promise<unknown>,
  type: typeof ValidationError | typeof ConflictError,
): Promise<string> {
  try {
    await work;
  } catch (error) {
    expect(error).to.be.instanceOf(type);
    return (error as Error).message;
  }
  expect.fail(`expected a ${type.name}`);
}

describe("bank bridge store", function () {
  let db: Database;
  let bridge: BankBridge;
  let outDir: string;
  let nextDebit = 1n;

  async function request(mandateRef: Hex, amount = 12_340_000n, token = EURC): Promise<string> {
    const debitId = nextDebit++;
    await bridge.recordRequest({
      debitId,
      agreementId: debitId,
      mandateRef,
      token,
      tokenDecimals: 6,
      amount,
      dueDate: DUE,
    });
    return String(debitId);
  }

  beforeEach(async () => {
    outDir = mkdtempSync(join(tmpdir(), "ppu-bank-store-"));
    db = await openDatabase();
    bridge = await BankBridge.open({
      db,
      contract: CONTRACT,
      creditor: CREDITOR,
      eurTokens: [EURC],
      outDir,
      now: () => NOW,
    });
    nextDebit = 1n;
  });

  afterEach(async () => {
    await db.close();
    rmSync(outDir, { recursive: true, force: true });
  });

  it("stores mandates all or nothing", async () => {
    const message = await rejects(
      bridge.addMandates([
        mandateInput(1),
        mandateInput(2, { iban: "DE00370400440532013000" }),
        mandateInput(3, { signedOn: "" }),
      ]),
      ValidationError,
    );
    expect(message).to.match(/2 of 3 mandates are not valid; none was stored/);
    expect(message).to.match(/#2: mandate PPU-M-0002 is not valid: invalid IBAN/);
    expect(message).to.match(/#3: .*no date of signature/);
    expect(await bridge.mandates()).to.deep.equal([]);

    await bridge.addMandate(mandateInput(1));
    expect(
      await rejects(bridge.addMandates([mandateInput(2), mandateInput(1)]), ConflictError),
    ).to.match(/PPU-M-0001 already registered; nothing was stored/);
    expect((await bridge.mandates()).map((m) => m.mandateId)).to.deep.equal(["PPU-M-0001"]);
  });

  it("leaves out what cannot be collected, says why, and exports it once it can", async () => {
    const known = await bridge.addMandate(mandateInput(1));
    const revoked = await bridge.addMandate(mandateInput(2));
    await bridge.revokeMandate("PPU-M-0002");
    const unknownRef = `0x${"ab".repeat(32)}` as Hex;
    const ok = await request(known.mandateRef);
    const noMandate = await request(unknownRef);
    const isRevoked = await request(revoked.mandateRef);
    const dollars = await request(known.mandateRef, 5_000_000n, USDC);
    const tooLarge = await request(known.mandateRef, 1_000_000_000_000_000n);

    const report = await bridge.exportBatch();
    expect(report.debits).to.equal(1);
    expect(report.controlSum).to.equal("12.34");
    const reasons = Object.fromEntries(report.skipped.map((s) => [s.debitId, s.reason]));
    expect(reasons[noMandate]).to.match(/no mandate is registered for reference 0xabab/);
    expect(reasons[isRevoked]).to.match(/mandate PPU-M-0002 is revoked/);
    expect(reasons[dollars]).to.match(/is not a euro token/);
    expect(reasons[tooLarge]).to.match(/1000000000\.00 EUR is outside the scheme's limits/);
    expect(reasons[ok]).to.equal(undefined);
    const open = await bridge.debits({ state: "open" });
    expect(open.map((d) => d.debit_id)).to.deep.equal([noMandate, isRevoked, dollars, tooLarge]);
    expect(open[0]!.problem).to.match(/no mandate/);

    // The lessee's mandate arrives later under the reference already on-chain: the debit goes out.
    await db.query("UPDATE bank_mandates SET mandate_ref = $1 WHERE mandate_id = 'PPU-M-0002'", [
      unknownRef,
    ]);
    await db.query("UPDATE bank_mandates SET revoked_at = NULL");
    const next = await bridge.exportBatch();
    expect(next.debits).to.equal(1);
    expect((await bridge.debits({ state: "exported" })).map((d) => d.debit_id)).to.deep.equal([
      ok,
      noMandate,
    ]);
  });

  it("uses FRST for a mandate's first collection, RCUR after, and OOFF once for a one-off mandate", async () => {
    const recurring = await bridge.addMandate(mandateInput(1));
    const oneOff = await bridge.addMandate(mandateInput(2, { kind: "oneoff" }));
    await request(recurring.mandateRef);
    await request(recurring.mandateRef);
    await request(oneOff.mandateRef);
    const first = await bridge.exportBatch();
    expect(first.batches.map((b) => `${b.sequenceType}:${b.debits}`).sort()).to.deep.equal([
      "FRST:1",
      "OOFF:1",
      "RCUR:1",
    ]);
    const xml = readFileSync(first.file!, "utf8");
    expect(xml.match(/<PmtInf>/g)).to.have.length(3);

    await request(recurring.mandateRef);
    const used = await request(oneOff.mandateRef);
    const second = await bridge.exportBatch();
    expect(second.batches.map((b) => `${b.sequenceType}:${b.debits}`)).to.deep.equal(["RCUR:1"]);
    expect(second.skipped).to.deep.equal([
      { debitId: used, reason: "one-off mandate PPU-M-0002 was already used" },
    ]);
    expect(second.messageId).not.to.equal(first.messageId);
  });

  it("does not collect under a mandate unused for 36 months", async () => {
    const old = await bridge.addMandate(mandateInput(1, { signedOn: "2023-10-01" }));
    const debit = await request(old.mandateRef);
    const report = await bridge.exportBatch();
    expect(report.skipped).to.deep.equal([
      {
        debitId: debit,
        reason:
          "mandate PPU-M-0001 lapsed: nothing was collected under it for 36 months (since 2023-10-01)",
      },
    ]);
  });

  it("writes a planned file after an interruption, identical to the one planned", async () => {
    const mandate = await bridge.addMandate(mandateInput(1));
    await request(mandate.mandateRef);
    await request(mandate.mandateRef, 1n);
    // The file cannot be written (its temporary name is taken by a directory): the plan is committed.
    const path = join(outDir, "pain.008-PPU-20261125100000-000001.xml");
    mkdirSync(`${path}.partial`);
    const interrupted = await bridge.exportBatch().then(
      () => undefined,
      (error: NodeJS.ErrnoException) => error,
    );
    expect(interrupted?.code).to.equal("EISDIR");
    expect(existsSync(path)).to.equal(false);
    expect((await bridge.debits({ state: "exported" })).length).to.equal(2);

    rmSync(`${path}.partial`, { recursive: true });
    const report = await bridge.exportBatch();
    expect(report.recovered).to.deep.equal([path]);
    expect(report.debits).to.equal(0);
    const written = readFileSync(path);
    const { rows } = await db.query<{ sha256: string }>("SELECT sha256 FROM bank_exports");
    expect(rows[0]!.sha256).to.equal(createHash("sha256").update(written).digest("hex"));

    // Written again from the store alone: byte for byte the same file.
    rmSync(path);
    await db.query("UPDATE bank_exports SET written_at = NULL");
    await bridge.exportBatch();
    expect(readFileSync(path).equals(written)).to.equal(true);
    expect(written.toString()).to.include('<InstdAmt Ccy="EUR">0.01</InstdAmt>');
  });
});

describe("camt.054 reading", () => {
  const entries = [
    {
      endToEndId: "PPU-5FBDB231-1",
      mandateId: "PPU-M-0001",
      cents: 1234n,
      direction: "CRDT" as const,
      bookingDate: "2026-11-27",
    },
    {
      endToEndId: "PPU-5FBDB231-2",
      mandateId: "PPU-M-0002",
      cents: 99n,
      direction: "DBIT" as const,
      bookingDate: "2026-11-30",
      reasonCode: "AC04",
    },
    {
      endToEndId: "PPU-5FBDB231-3",
      cents: 5n,
      direction: "CRDT" as const,
      bookingDate: "2026-11-30",
      status: "PDNG" as const,
    },
  ];

  for (const version of ["camt.054.001.08", "camt.054.001.02"] as const) {
    it(`reads ${version}`, () => {
      const xml = writeCamt054({
        version,
        messageId: "B-1",
        createdAt: NOW,
        accountIban: CREDITOR.iban,
        entries,
      });
      const statement = parseCamt054(xml);
      expect(statement.version).to.equal(version);
      expect(statement.messageId).to.equal("B-1");
      expect(statement.transactions).to.have.length(3);
      expect(statement.transactions[0]).to.deep.include({
        direction: "CRDT",
        status: "BOOK",
        cents: 1234n,
        currency: "EUR",
        endToEndId: "PPU-5FBDB231-1",
        mandateId: "PPU-M-0001",
        bookingDate: "2026-11-27",
        bankTransactionCode: "PMNT/IDDT/ESDD",
      });
      expect(statement.transactions[1]).to.deep.include({
        direction: "DBIT",
        reasonCode: "AC04",
        cents: 99n,
      });
      expect(statement.transactions[2]).to.deep.include({ status: "PDNG" });
    });
  }

  it("reads a batch booking: one entry, several transactions with their own amounts", () => {
    const xml = `<?xml version="1.0"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.054.001.02"><BkToCstmrDbtCdtNtfctn>
<GrpHdr><MsgId>BATCH-1</MsgId><CreDtTm>2026-11-27T06:00:00</CreDtTm></GrpHdr>
<Ntfctn><Id>N1</Id><Acct><Id><IBAN>${CREDITOR.iban}</IBAN></Id></Acct>
<Ntry><Amt Ccy="EUR">30.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>BOOK</Sts><BookgDt><DtTm>2026-11-27T05:00:00</DtTm></BookgDt>
<BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>IDDT</Cd><SubFmlyCd>ESDD</SubFmlyCd></Fmly></Domn></BkTxCd>
<NtryDtls><Btch><NbOfTxs>2</NbOfTxs></Btch>
<TxDtls><Refs><EndToEndId>A</EndToEndId><MndtId>M1</MndtId></Refs><AmtDtls><TxAmt><Amt Ccy="EUR">10.00</Amt></TxAmt></AmtDtls></TxDtls>
<TxDtls><Refs><EndToEndId>B</EndToEndId><MndtId>M2</MndtId></Refs><AmtDtls><TxAmt><Amt Ccy="EUR">20.00</Amt></TxAmt></AmtDtls></TxDtls>
</NtryDtls></Ntry></Ntfctn></BkToCstmrDbtCdtNtfctn></Document>`;
    const statement = parseCamt054(xml);
    expect(
      statement.transactions.map((t) => [t.position, t.endToEndId, t.cents, t.bookingDate]),
    ).to.deep.equal([
      ["entry 1, transaction 1", "A", 1000n, "2026-11-27"],
      ["entry 1, transaction 2", "B", 2000n, "2026-11-27"],
    ]);
  });

  it("says what is wrong with a file that is not a camt.054 notification", () => {
    const bad = (xml: string) => {
      try {
        parseCamt054(xml, "upload.xml");
      } catch (error) {
        expect(error).to.be.instanceOf(ValidationError);
        return (error as Error).message;
      }
      expect.fail("expected a ValidationError");
    };
    expect(bad("<Document><unclosed></Document>")).to.match(/upload\.xml is not well-formed XML/);
    expect(bad('<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"/>')).to.match(
      /namespace is urn:iso:std:iso:20022:tech:xsd:camt\.053\.001\.08 \(camt\.052\/053 account reports/,
    );
    expect(bad("<Invoice/>")).to.match(/namespace is \(none\)/);
    expect(
      bad(
        '<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.054.001.08"><BkToCstmrDbtCdtNtfctn><GrpHdr/></BkToCstmrDbtCdtNtfctn></Document>',
      ),
    ).to.match(/no group header message id/);
  });
});
