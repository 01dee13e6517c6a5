/**
 * The SEPA rules below the schema: character set and transliteration, identifiers, IBAN, BIC and
 * creditor identifier check digits, euro cents, mandates, TARGET2 business days in Europe/Berlin.
 */
import { expect } from "chai";
import {
  addBusinessDays,
  berlinDate,
  collectionDate,
  easterSunday,
  isTargetBusinessDay,
} from "../../services/bank/calendar.ts";
import { prepareMandate } from "../../services/bank/mandates.ts";
import {
  formatCents,
  isSepaText,
  normaliseBic,
  normaliseCreditorId,
  normaliseIban,
  parseCents,
  sepaIdProblem,
  tokenUnitsToCents,
  toSepaText,
} from "../../services/bank/sepa.ts";
import { ValidationError } from "../../services/shared/errors.ts";
import { CREDITOR, mandateInput } from "./fixtures.ts";

function message(work: () => unknown): string {
  try {
    work();
  } catch (error) {
    expect(error).to.be.instanceOf(ValidationError);
    return (error as Error).message;
  }
  expect.fail("expected a ValidationError");
}

describe("SEPA text and identifiers", () => {
  it("transliterates names instead of refusing them", () => {
    expect(toSepaText("Jörg Müller-Lüdenscheidt")).to.equal("Joerg Mueller-Luedenscheidt");
    expect(toSepaText("Straße & Söhne")).to.equal("Strasse + Soehne");
    expect(toSepaText("Łukasz Żółć")).to.equal("Lukasz Zolc");
    expect(toSepaText("Zoë Ærøskøbing")).to.equal("Zoe AEroskobing");
    expect(toSepaText("Ana Conceição")).to.equal("Ana Conceicao");
    expect(toSepaText("Σοφία Παπαδοπούλου")).to.equal("Sofia Papadopoulou");
    expect(toSepaText("Иван Петров")).to.equal("Ivan Petrov");
    expect(toSepaText("O’Brien “Ltd.”")).to.equal("O'Brien 'Ltd.'");
    expect(toSepaText("王 Wang 😀 GmbH")).to.equal("Wang GmbH");
    expect(toSepaText("a\tb\n  c")).to.equal("a b c");
    for (const sample of ["Jörg Müller", "Σοφία", "王 Wang 😀", '<&>"{}[]#*%$!=;@']) {
      expect(isSepaText(toSepaText(sample)), sample).to.equal(true);
    }
    expect(toSepaText("Müller", 4)).to.equal("Muel");
  });

  it("accepts identifiers of up to 35 SEPA characters and explains the rest", () => {
    expect(sepaIdProblem("A".repeat(35), "id")).to.equal(undefined);
    expect(sepaIdProblem("A".repeat(36), "id")).to.match(/36 characters long; at most 35/);
    expect(sepaIdProblem("", "id")).to.match(/empty/);
    expect(sepaIdProblem("Müller", "id")).to.match(/outside the SEPA set/);
    expect(sepaIdProblem("/abc", "id")).to.match(/must not start or end with "\/"/);
    expect(sepaIdProblem("a//b", "id")).to.match(/"\/\/"/);
  });

  it("validates IBANs and BICs with their check digits", () => {
    expect(normaliseIban("de89 3704 0044 0532 0130 00")).to.equal("DE89370400440532013000");
    expect(message(() => normaliseIban("DE89370400440532013001"))).to.match(
      /invalid IBAN "DE89370400440532013001": check digits do not match/,
    );
    expect(message(() => normaliseIban("DE8937040044053201300"))).to.match(/wrong length/);
    expect(message(() => normaliseIban("XX89370400440532013000"))).to.match(/invalid IBAN/);
    expect(message(() => normaliseIban("BR1800360305000010009795493C1"))).to.match(
      /not from a SEPA country/,
    );
    expect(normaliseBic("cobadeff xxx")).to.equal("COBADEFFXXX");
    expect(message(() => normaliseBic("COBADE"))).to.match(/invalid BIC "COBADE"/);
  });

  it("checks the creditor identifier's ISO 7064 MOD 97-10 digits", () => {
    expect(normaliseCreditorId("DE98ZZZ09999999999")).to.equal("DE98ZZZ09999999999");
    expect(normaliseCreditorId("de98 zzz 0999 9999 999")).to.equal("DE98ZZZ09999999999");
    // The business code does not take part in the check.
    expect(normaliseCreditorId("DE98ABC09999999999")).to.equal("DE98ABC09999999999");
    expect(normaliseCreditorId("NL69ZZZ123456780000")).to.equal("NL69ZZZ123456780000");
    expect(message(() => normaliseCreditorId("DE97ZZZ09999999999"))).to.match(
      /check digits 97 do not match \(ISO 7064 MOD 97-10 gives 98\)/,
    );
    expect(message(() => normaliseCreditorId("DE98ZZZ"))).to.match(/expected country code/);
    expect(message(() => normaliseCreditorId("US98ZZZ09999999999"))).to.match(/not a SEPA country/);
  });

  it("writes and reads euro amounts in integer cents", () => {
    expect(formatCents(1n)).to.equal("0.01");
    expect(formatCents(99_999_999_999n)).to.equal("999999999.99");
    expect(formatCents(1230n)).to.equal("12.30");
    expect(parseCents("12.3")).to.equal(1230n);
    expect(parseCents("12")).to.equal(1200n);
    expect(parseCents("0.01000")).to.equal(1n);
    expect(message(() => parseCents("0.001"))).to.match(/fractions of a cent/);
    expect(message(() => parseCents("-1.00"))).to.match(/not an amount/);
  });

  it("rounds token amounts up to whole cents so a collection always clears the debt", () => {
    expect(tokenUnitsToCents(250_000_000n, 6)).to.equal(25_000n);
    expect(tokenUnitsToCents(250_000_001n, 6)).to.equal(25_001n);
    expect(tokenUnitsToCents(1n, 18)).to.equal(1n);
    expect(tokenUnitsToCents(5n, 0)).to.equal(500n);
    expect(tokenUnitsToCents(5n, 2)).to.equal(5n);
  });
});

describe("mandates", () => {
  const today = "2026-11-25";

  it("derives the on-chain reference from a secret salt, never from personal data", () => {
    const a = prepareMandate(mandateInput(0), CREDITOR.creditorId, { today });
    const b = prepareMandate(mandateInput(0), CREDITOR.creditorId, { today });
    expect(a.mandateRef).to.match(/^0x[0-9a-f]{64}$/);
    expect(a.mandateRef).not.to.equal(b.mandateRef);
    expect(a.debtorName).to.equal("Joerg Mueller");
    expect(a.address).to.deep.include({ street: "Domstrasse", town: "Koeln", country: "DE" });
  });

  it("refuses a mandate with every problem named at once", () => {
    const error = message(() =>
      prepareMandate(
        mandateInput(0, {
          signedOn: undefined as never,
          iban: "DE89370400440532013001",
          address: { town: "", country: "Germany" },
        }),
        CREDITOR.creditorId,
        { today },
      ),
    );
    expect(error).to.match(/mandate PPU-M-0000 is not valid/);
    expect(error).to.match(/no date of signature/);
    expect(error).to.match(/invalid IBAN/);
    expect(error).to.match(/no town/);
    expect(error).to.match(/two-letter ISO 3166 country code/);
  });

  it("requires a BIC outside the EEA, a real signature date in the past and at most two address lines", () => {
    expect(
      message(() =>
        prepareMandate(mandateInput(0, { iban: "CH9300762011623852957" }), CREDITOR.creditorId, {
          today,
        }),
      ),
    ).to.match(/a BIC is required for a debtor account in CH/);
    expect(
      message(() =>
        prepareMandate(mandateInput(0, { signedOn: "2026-02-30" }), CREDITOR.creditorId, { today }),
      ),
    ).to.match(/"2026-02-30" is not a date/);
    expect(
      message(() =>
        prepareMandate(mandateInput(0, { signedOn: "2026-12-01" }), CREDITOR.creditorId, { today }),
      ),
    ).to.match(/in the future/);
    expect(
      message(() =>
        prepareMandate(
          mandateInput(1, { address: { town: "Berlin", country: "DE", lines: ["a", "b", "c"] } }),
          CREDITOR.creditorId,
          { today },
        ),
      ),
    ).to.match(/3 lines; at most 2/);
    expect(
      message(() => prepareMandate(mandateInput(0), "DE00ZZZ09999999999", { today })),
    ).to.match(/invalid creditor identifier/);
  });
});

describe("collection dates on TARGET2 business days in Europe/Berlin", () => {
  it("knows Easter and the TARGET2 holidays", () => {
    expect(easterSunday(2026).toISOString().slice(0, 10)).to.equal("2026-04-05");
    expect(easterSunday(2027).toISOString().slice(0, 10)).to.equal("2027-03-28");
    expect(easterSunday(2038).toISOString().slice(0, 10)).to.equal("2038-04-25");
    for (const holiday of [
      "2027-01-01",
      "2027-03-26",
      "2027-03-29",
      "2027-05-01",
      "2026-12-25",
      "2026-12-26",
    ]) {
      expect(isTargetBusinessDay(holiday), holiday).to.equal(false);
    }
    expect(isTargetBusinessDay("2026-11-28"), "Saturday").to.equal(false);
    expect(isTargetBusinessDay("2026-11-25")).to.equal(true);
    // German public holidays that are not TARGET2 holidays.
    expect(isTargetBusinessDay("2026-10-03")).to.equal(false); // a Saturday anyway
    expect(isTargetBusinessDay("2027-05-06")).to.equal(true); // Ascension Day
  });

  it("takes the calendar day in Berlin, not the server's", () => {
    expect(berlinDate(new Date("2026-11-25T23:30:00Z"))).to.equal("2026-11-26");
    expect(berlinDate(new Date("2026-07-01T21:59:00Z"))).to.equal("2026-07-01");
    expect(berlinDate(new Date("2026-07-01T22:00:00Z"))).to.equal("2026-07-02");
  });

  it("counts business days over weekends and holidays", () => {
    expect(addBusinessDays("2026-11-27", 1)).to.equal("2026-11-30"); // Friday → Monday
    expect(addBusinessDays("2026-12-24", 1)).to.equal("2026-12-28"); // over Christmas
    expect(addBusinessDays("2027-03-25", 1)).to.equal("2027-03-30"); // over Easter
    expect(addBusinessDays("2026-11-28", 1)).to.equal("2026-12-01"); // a Saturday counts as Monday
  });

  it("collects no earlier than the due date and one business day after the export", () => {
    const exportedAt = new Date("2026-11-25T10:00:00Z");
    expect(collectionDate(new Date("2026-11-20T00:00:00Z"), exportedAt, 1)).to.equal("2026-11-26");
    expect(collectionDate(new Date("2026-12-05T12:00:00Z"), exportedAt, 1)).to.equal("2026-12-07");
    // Exported late on Thursday evening in Berlin: Friday 00:30 local, so Monday is the earliest.
    expect(
      collectionDate(new Date("2026-11-01T00:00:00Z"), new Date("2026-11-26T23:30:00Z"), 1),
    ).to.equal("2026-11-30");
  });
});
