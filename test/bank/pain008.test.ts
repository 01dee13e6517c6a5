/**
 * pain.008.001.08 files against the official ISO 20022 schema (libxml2), for batches of 1, 100 and
 * 10,000 debits with names outside the SEPA character set, the longest allowed identifiers and the
 * scheme's smallest and largest amounts; and the rules the schema cannot express.
 */
import { expect } from "chai";
import { composeIBAN } from "ibantools";
import { renderPain008, checkPain008, type Pain008Document } from "../../services/bank/pain008.ts";
import { toSepaText } from "../../services/bank/sepa.ts";
import { hasNativeXmllint, validateXsd } from "../../services/bank/xsd.ts";
import { ValidationError } from "../../services/shared/errors.ts";
import { CREDITOR } from "./fixtures.ts";

const NAMES = [
  "Jörg Müller-Lüdenscheidt",
  "Łukasz Żółć & Söhne",
  "Σοφία Παπαδοπούλου",
  "王小明 <Wang> GmbH",
  "Ana Conceição d’Ávila",
  "A".repeat(90),
];

function iban(index: number): string {
  return composeIBAN({ countryCode: "DE", bban: `37040044${String(1_000_000_000 + index)}` })!;
}

/** A document of `count` debits spread over two collection dates and both recurring sequence types. */
function document(count: number): Pain008Document {
  const messageId = `M${"9".repeat(34)}`; // 35 characters
  const groups = [
    { sequenceType: "FRST" as const, collectionDate: "2026-11-27" },
    { sequenceType: "RCUR" as const, collectionDate: "2026-11-27" },
    { sequenceType: "RCUR" as const, collectionDate: "2026-11-30" },
  ].slice(0, Math.min(3, count));
  return {
    messageId,
    createdAt: new Date("2026-11-25T10:00:00Z"),
    creditor: CREDITOR,
    batches: groups.map((group, g) => ({
      ...group,
      paymentInfoId: `P${String(g).padStart(34, "0")}`,
      transactions: Array.from(
        { length: Math.ceil(count / groups.length) },
        (_, i) => i * groups.length + g,
      )
        .filter((index) => index < count)
        .map((index) => ({
          endToEndId: `E${String(index).padStart(34, "0")}`,
          mandateId: `PPU-M-${String(index).padStart(29, "0")}`,
          signedOn: "2026-10-01",
          cents:
            index === 0
              ? 99_999_999_999n
              : index === 1
                ? 1n
                : BigInt(1 + ((index * 7_919) % 10_000_000)),
          debtor: {
            name: toSepaText(NAMES[index % NAMES.length]!, 70),
            iban: iban(index),
            address:
              index % 2 === 0
                ? {
                    street: "Domstrasse",
                    buildingNumber: String(index % 999),
                    postCode: "50667",
                    town: "Koeln",
                    country: "DE",
                  }
                : {
                    town: "Muenchen",
                    country: "DE",
                    lines: [`Marienplatz ${index % 90}`, "Hinterhaus"],
                  },
          },
          remittance: `Usage agreement ${index} debit ${index}`,
        })),
    })),
  };
}

describe("pain.008.001.08 against the ISO 20022 schema", function () {
  for (const count of [1, 100, 10_000]) {
    it(`a batch of ${count.toLocaleString("en")} debit(s) validates`, async function () {
      const doc = document(count);
      const xml = renderPain008(doc);
      const result = await validateXsd(xml);
      expect(result.errors).to.deep.equal([]);
      expect(result.valid).to.equal(true);
      expect(xml.match(/<DrctDbtTxInf>/g)).to.have.length(count);
      expect(xml).to.match(new RegExp(`<NbOfTxs>${count}</NbOfTxs>`));
      // Only the SEPA character set (and the XML's own markup) in the file.
      expect(xml.replace(/<[^>]*>/g, "")).to.match(/^[A-Za-z0-9/\-?:().,'+ \n&;]*$/);
      if (count === 1) {
        expect(xml).to.include('<InstdAmt Ccy="EUR">999999999.99</InstdAmt>');
        expect(xml).to.include("<Nm>Joerg Mueller-Luedenscheidt</Nm>");
      }
      if (count >= 100) {
        expect(xml).to.include('<InstdAmt Ccy="EUR">0.01</InstdAmt>');
        expect(xml).to.include("<Nm>Sofia Papadopoulou</Nm>");
        expect(xml).to.include("<Nm>Wang GmbH</Nm>");
        expect(xml).to.match(/<EndToEndId>E0{34}<\/EndToEndId>/);
        expect(xml).to.match(/<MndtId>PPU-M-0{29}<\/MndtId>/);
      }
    });
  }

  it("gives the same verdict with libxml2's WebAssembly build, which needs nothing installed", async function () {
    const xml = renderPain008(document(100));
    expect((await validateXsd(xml, undefined, { engine: "xmllint-wasm" })).valid).to.equal(true);
    const broken = xml.replace("<PmtMtd>DD</PmtMtd>", "<PmtMtd>TRF</PmtMtd>");
    const wasm = await validateXsd(broken, undefined, { engine: "xmllint-wasm" });
    expect(wasm.valid).to.equal(false);
    expect(wasm.errors.join("\n")).to.match(/PmtMtd/);
    if (!hasNativeXmllint()) {
      console.log("      xmllint is not installed: the native check of the broken file is skipped");
      return;
    }
    const native = await validateXsd(broken, undefined, { engine: "xmllint" });
    expect(native.valid).to.equal(false);
    expect(native.errors.join("\n")).to.match(/PmtMtd/);
  });

  it("is rejected by the schema when an element is out of place or an id too long", async function () {
    const xml = renderPain008(document(1));
    const reordered = xml.replace(
      /(\s*<PmtTpInf>.*<\/PmtTpInf>\n)(\s*<ReqdColltnDt>[^<]*<\/ReqdColltnDt>\n)/,
      "$2$1",
    );
    expect(reordered).not.to.equal(xml);
    const outOfPlace = await validateXsd(reordered);
    expect(outOfPlace.valid).to.equal(false);
    expect(outOfPlace.errors.join("\n")).to.match(/ReqdColltnDt|PmtTpInf/);
    const longId = xml.replace(/<MsgId>[^<]*<\/MsgId>/, `<MsgId>${"X".repeat(36)}</MsgId>`);
    expect((await validateXsd(longId)).valid).to.equal(false);
  });
});

describe("pain.008 rules the schema cannot express", () => {
  function problems(change: (doc: Pain008Document) => void): string {
    const doc = document(3);
    change(doc);
    const found = checkPain008(doc, { today: "2026-11-25" });
    expect(() => renderPain008(doc, { today: "2026-11-25" })).to.throw(ValidationError);
    return found.join("\n");
  }

  it("accepts the reference document", () => {
    expect(checkPain008(document(3), { today: "2026-11-25" })).to.deep.equal([]);
  });

  it("refuses amounts outside the scheme's limits", () => {
    expect(problems((doc) => (doc.batches[0]!.transactions[0]!.cents = 100_000_000_000n))).to.match(
      /outside the scheme's 0\.01 to 999999999\.99/,
    );
    expect(problems((doc) => (doc.batches[0]!.transactions[0]!.cents = 0n))).to.match(
      /outside the scheme/,
    );
  });

  it("refuses repeated ids, a second block for the same date and sequence, and holidays", () => {
    expect(
      problems(
        (doc) =>
          (doc.batches[1]!.transactions[0]!.endToEndId =
            doc.batches[0]!.transactions[0]!.endToEndId),
      ),
    ).to.match(/end-to-end id "E0+" is used twice/);
    expect(problems((doc) => (doc.batches[1]!.sequenceType = "FRST"))).to.match(
      /a second block for 2026-11-27\/FRST/,
    );
    expect(problems((doc) => (doc.batches[2]!.collectionDate = "2026-12-25"))).to.match(
      /2026-12-25 is not a TARGET2 business day/,
    );
    expect(problems((doc) => (doc.batches[2]!.collectionDate = "2026-11-25"))).to.match(
      /not after today/,
    );
  });

  it("refuses characters outside the SEPA set, unstructured addresses and a missing BIC outside the EEA", () => {
    expect(problems((doc) => (doc.batches[0]!.transactions[0]!.debtor.name = "Jörg"))).to.match(
      /name "Jörg" has characters outside the SEPA set/,
    );
    expect(
      problems(
        (doc) => (doc.batches[0]!.transactions[0]!.debtor.address = { town: "", country: "DE" }),
      ),
    ).to.match(/address without town/);
    expect(
      problems((doc) => {
        doc.batches[0]!.transactions[0]!.debtor.iban = "CH9300762011623852957";
      }),
    ).to.match(/a BIC is required outside the EEA/);
    expect(
      problems((doc) => (doc.creditor = { ...doc.creditor, creditorId: "DE97ZZZ09999999999" })),
    ).to.match(/check digits 97 do not match/);
  });
});
